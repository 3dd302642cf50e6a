import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService, parseGitPolicy, PermissionsClient, serveRequests, servesApi, type OpenApiDocument } from '@dockyard/kit';
import { loadDocument, type RegistryAppGetReply, type RegistryAppGetRequest } from '@dockyard/contracts';
import { PrismaClient } from './generated/prisma/client.js';
import type { RegistryConfig } from './config.js';
import { Registry } from './domain/registry.js';
import { SourceFetcher } from './domain/source.js';
import { registryRoutes } from './routes/registry.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

declare module 'fastify' {
  interface FastifyInstance {
    registry: Registry;
  }
}

/** The registry service: ECR apps, versions, namespaces and repositories. */
export async function buildRegistryApp(config: RegistryConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'registry',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  const prisma = app.db.prisma as unknown as PrismaClient;
  const doc = await loadDocument<OpenApiDocument>('registry');
  const permissions = new PermissionsClient(app.nats, app.subjects, { ttlMs: config.DOCKYARD_PERMISSION_CACHE_MS });
  const fetcher = new SourceFetcher({
    policy: parseGitPolicy(config.DOCKYARD_GIT_ALLOW),
    timeoutMs: config.DOCKYARD_GIT_TIMEOUT_S * 1000,
    maxArchiveBytes: config.DOCKYARD_REGISTRY_SOURCE_MAX_MB * 1024 * 1024,
  });
  if (config.DOCKYARD_REGISTRY_SKIP_CLONE) app.log.warn('DOCKYARD_REGISTRY_SKIP_CLONE is on: submits are stored without cloning (benchmarks only)');
  const registry = new Registry({ prisma, permissions, blobs: app.blobs, events: app.events, fetcher, log: app.log, skipClone: config.DOCKYARD_REGISTRY_SKIP_CLONE, appCacheMs: config.DOCKYARD_REGISTRY_APP_CACHE_MS });
  app.decorate('registry', registry);
  // No background work here: a `worker` process only answers health and metrics.
  if (!servesApi(config)) return app;

  await app.register(registryRoutes, { doc, registry, blobs: app.blobs });

  // Every replica drops a cached app when any replica changes it (the events every change publishes).
  const changes = app.nats.subscribe(app.subjects.of('events.registry.app.>'));
  void (async () => {
    for await (const msg of changes) {
      try {
        registry.forgetCached(msg.json<{ namespace: string; name: string; version: string }>());
      } catch {
        /* not an app event */
      }
    }
  })();

  // contracts.md #1: the build service reads apps (with commit and source archive) over NATS.
  serveRequests<RegistryAppGetRequest, RegistryAppGetReply>(
    app.nats,
    app.subjects.of('registry.app.get'),
    async (req) => ({ app: await registry.appForBuild(req) }),
    app.log,
  );
  return app;
}
