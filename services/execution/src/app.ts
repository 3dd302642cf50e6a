import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService, dockerPlugin } from '@dockyard/kit';
import { PrismaClient } from './generated/prisma/client.js';
import type { ExecutionConfig } from './config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The execution service: kabuto pipelines and the jobs they run in containers. */
export async function buildExecutionApp(config: ExecutionConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'execution',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  await app.register(dockerPlugin, {});
  return app;
}
