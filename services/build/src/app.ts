import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService, dockerPlugin } from '@dockyard/kit';
import { PrismaClient } from './generated/prisma/client.js';
import type { BuildConfig } from './config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The build service: every image build on the Docker engine: ECR app builds, Kabuto images, REE environments. */
export async function buildBuildApp(config: BuildConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'build',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  await app.register(dockerPlugin, { registry: config.DOCKYARD_REGISTRY });
  return app;
}
