import fp from 'fastify-plugin';
import type { NatsConnection } from '@nats-io/transport-node';
import { openDatabase, type Database, type DatabaseOptions, type PrismaLike } from './database.js';
import { connectNats, EventPublisher, Subjects } from './nats.js';
import { FsBlobStore, type BlobStore } from './blobstore.js';
import { identityVerifier, IDENTITY_HEADER, type Identity } from './identity.js';
import { EventOutbox, type SqlExecutor } from './outbox.js';

declare module 'fastify' {
  interface FastifyInstance {
    db: Database<PrismaLike>;
    nats: NatsConnection;
    subjects: Subjects;
    events: EventPublisher;
    blobs: BlobStore;
    /** The service's event outbox (services created with `outbox: true`). */
    outbox: EventOutbox;
  }
  interface FastifyRequest {
    /** The caller, from the gateway's internal identity token. */
    identity: Identity;
  }
}

/** Opens the service's database (PostgreSQL or embedded PGlite), migrated; closes it on shutdown. */
export const databasePlugin = fp<DatabaseOptions<PrismaLike>>(
  async (app, opts) => {
    const db = await openDatabase(opts);
    if (db.applied.length) app.log.info({ applied: db.applied, kind: db.kind }, 'migrations applied');
    app.decorate('db', db);
    app.readiness.set('database', db.ping);
    app.addHook('onClose', async () => db.close());
  },
  { name: 'dockyard-database' },
);

/** Connects to NATS (reconnecting forever), ensures the EVENTS stream, drains on shutdown. */
export const natsPlugin = fp<{ servers: string; prefix: string; name: string; replicas?: number }>(
  async (app, opts) => {
    const nc = await connectNats(opts.servers, opts.name, { replicas: opts.replicas });
    const subjects = new Subjects(opts.prefix);
    const events = new EventPublisher(nc, subjects);
    await events.ensureStream();
    app.decorate('nats', nc);
    app.decorate('subjects', subjects);
    app.decorate('events', events);
    app.readiness.set('nats', async () => {
      if (nc.isClosed()) throw new Error('connection closed');
      await nc.flush();
    });
    app.addHook('onClose', async () => {
      if (!nc.isClosed()) await nc.drain();
    });
  },
  { name: 'dockyard-nats' },
);

/** The filesystem blob store under the service's data directory. */
export const blobPlugin = fp<{ root: string }>(
  async (app, opts) => {
    app.decorate('blobs', new FsBlobStore(opts.root));
  },
  { name: 'dockyard-blobs' },
);

/**
 * Every route except those marked `config: { public: true }` requires a valid internal identity
 * token from the gateway; a client-supplied user header is never trusted.
 */
export const identityPlugin = fp<{ secret: string }>(
  async (app, opts) => {
    const verify = identityVerifier(opts.secret);
    app.decorateRequest('identity', null as unknown as Identity);
    app.addHook('onRequest', async (request) => {
      if (request.routeOptions.config?.public) return;
      request.identity = verify(request.headers[IDENTITY_HEADER] as string | undefined);
    });
  },
  { name: 'dockyard-identity' },
);

/**
 * The service's event outbox (its migrations create `event_outbox`): every replica, api or worker,
 * publishes what any replica left there, every `intervalMs`.
 */
export const outboxPlugin = fp<{ intervalMs?: number }>(
  async (app, opts) => {
    const outbox = new EventOutbox(app.db.prisma as unknown as SqlExecutor, app.events, app.log, opts);
    outbox.start();
    app.decorate('outbox', outbox);
    app.addHook('onClose', async () => outbox.stop());
  },
  { name: 'dockyard-outbox', dependencies: ['dockyard-database', 'dockyard-nats'] },
);
