import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService } from '@dockyard/kit';
import { PrismaClient } from './generated/prisma/client.js';
import type { ProcessConfig } from './config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The process service: rEE processes: define and build reproducible execution environments; base images. */
export async function buildProcessApp(config: ProcessConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'process',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  return app;
}
