import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService } from '@dockyard/kit';
import { PrismaClient } from './generated/prisma/client.js';
import type { RegistryConfig } from './config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The registry service: eCR apps, versions, namespaces and repositories. */
export async function buildRegistryApp(config: RegistryConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'registry',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  return app;
}
