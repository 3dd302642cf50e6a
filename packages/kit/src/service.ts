import path from 'node:path';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createApp } from './app.js';
import { serviceDataDir, type BaseConfig } from './config.js';
import type { DriverAdapter, PrismaLike } from './database.js';
import { blobPlugin, databasePlugin, identityPlugin, natsPlugin, outboxPlugin } from './plugins.js';

export interface ServiceOptions<C extends PrismaLike> {
  service: string;
  config: BaseConfig;
  /** The service's `prisma/migrations` folder. */
  migrationsDir: string;
  /** The service's generated PrismaClient class; the kit constructs it on the right adapter. */
  PrismaClient: new (options: { adapter: DriverAdapter }) => C;
  bodyLimit?: number;
  /** The service announces stored changes through an event outbox (kit EventOutbox; its migrations create `event_outbox`). */
  outbox?: boolean;
  fastify?: Partial<FastifyServerOptions>;
}

/**
 * A service's Fastify instance with its infrastructure attached: identity check, database
 * (migrated), NATS + events, the event outbox if asked, blob store. The service then registers its routes and workers.
 */
export async function createService<C extends PrismaLike>(opts: ServiceOptions<C>): Promise<FastifyInstance> {
  const { config, service } = opts;
  const dataDir = serviceDataDir(config, service);
  // createApp allows 120 s per plugin: a replica may wait on another's migration lock, a NATS
  // cluster may be electing a leader, a loaded host may be slow.
  const app = createApp({ service, logLevel: config.DOCKYARD_LOG_LEVEL, bodyLimit: opts.bodyLimit, fastify: opts.fastify });
  await app.register(identityPlugin, { secret: config.DOCKYARD_INTERNAL_SECRET });
  await app.register(databasePlugin, {
    url: config.DATABASE_URL,
    schema: config.DOCKYARD_DB_SCHEMA ?? service.replace(/-/g, '_'),
    dataDir: path.join(dataDir, 'db'),
    migrationsDir: opts.migrationsDir,
    createClient: (adapter: DriverAdapter) => new opts.PrismaClient({ adapter }),
  });
  await app.register(natsPlugin, { servers: config.DOCKYARD_NATS_URL, prefix: config.DOCKYARD_NATS_PREFIX, name: service, replicas: config.DOCKYARD_NATS_REPLICAS });
  if (opts.outbox) await app.register(outboxPlugin, {});
  await app.register(blobPlugin, { root: config.DOCKYARD_BLOB_DIR ?? path.join(dataDir, 'blobs') });
  return app;
}
