import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService } from '@dockyard/kit';
import { PrismaClient } from './generated/prisma/client.js';
import type { SourceCacheConfig } from './config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The source-cache service: cachito requests: sources and their dependencies, bundled, with manifests and SBOMs. */
export async function buildSourceCacheApp(config: SourceCacheConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'source-cache',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  return app;
}
