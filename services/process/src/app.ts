import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import multipart from '@fastify/multipart';
import { createService, dockerPlugin, ensureStream, runWorker, runsWorkers, servesApi, serviceDataDir, type OpenApiDocument } from '@dockyard/kit';
import { loadDocument } from '@dockyard/contracts';
import { PrismaClient } from './generated/prisma/client.js';
import type { ProcessConfig } from './config.js';
import { Processes, WORK_STREAM, WORK_SUBJECT } from './domain/processes.js';
import { processRoutes } from './routes/processes.js';
import { imageRoutes } from './routes/images.js';
import { Runner } from './worker/runner.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

declare module 'fastify' {
  interface FastifyInstance {
    processes: Processes;
    runner: Runner | null;
  }
}

/** The process service: REE processes (define and build reproducible execution environments) and base images. */
export async function buildProcessApp(config: ProcessConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'process',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  await app.register(dockerPlugin, {});
  await app.register(multipart, {
    limits: { fileSize: config.DOCKYARD_PROCESS_MAX_UPLOAD_BYTES, files: 1, fields: 10, fieldSize: 64 * 1024, parts: 12 },
  });
  const prisma = app.db.prisma as unknown as PrismaClient;
  const processes = new Processes(prisma, app.nats, app.subjects, app.events);
  app.decorate('processes', processes);
  const doc = await loadDocument<OpenApiDocument>('process');
  const dataDir = serviceDataDir(config, 'process');
  const limits = {
    maxEntries: config.DOCKYARD_PROCESS_MAX_ENTRIES,
    maxEntryBytes: config.DOCKYARD_PROCESS_MAX_ENTRY_BYTES,
    maxTotalBytes: config.DOCKYARD_PROCESS_MAX_TOTAL_BYTES,
    maxUploadBytes: config.DOCKYARD_PROCESS_MAX_UPLOAD_BYTES,
  };
  // An API process may queue work before any worker started: whichever role starts first makes the queue.
  await ensureStream(app.nats, app.subjects.stream(WORK_STREAM), [app.subjects.of(WORK_SUBJECT)]);
  if (servesApi(config)) {
    await app.register(processRoutes, { doc, processes, limits, tmpDir: path.join(dataDir, 'uploads') });
    await app.register(imageRoutes, { doc, docker: app.docker, baseImages: config.DOCKYARD_PROCESS_BASE_IMAGES });
  }

  const runner = runsWorkers(config)
    ? new Runner({
      processes,
      docker: app.docker,
      nc: app.nats,
      subjects: app.subjects,
      blobs: app.blobs,
      log: app.log,
      baseImages: config.DOCKYARD_PROCESS_BASE_IMAGES,
      workDir: path.join(dataDir, 'work'),
      concurrency: config.DOCKYARD_PROCESS_CONCURRENCY,
      timeoutMs: config.DOCKYARD_PROCESS_TIMEOUT_S * 1000,
      ackWaitMs: config.DOCKYARD_PROCESS_ACK_WAIT_MS,
      maxAttempts: config.DOCKYARD_PROCESS_MAX_ATTEMPTS,
    })
    : null;
  // Stopping the runner (before NATS drains) hands running processes back to the queue.
  runWorker(app, config, () => runner!, { name: 'process worker' });
  app.decorate('runner', runner);
  return app;
}
