import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import multipart from '@fastify/multipart';
import { jetstream } from '@nats-io/jetstream';
import { createService, dockerPlugin, serviceDataDir, ensureStream, json, runWorker, servesApi, type OpenApiDocument } from '@dockyard/kit';
import { loadDocument, type ExecutionPipelineRun } from '@dockyard/contracts';
import { PrismaClient } from './generated/prisma/client.js';
import type { ExecutionConfig } from './config.js';
import { ExecutionEvents } from './domain/events.js';
import { ImageResolver } from './domain/images.js';
import { ContainerRunner } from './domain/runner.js';
import { ExecutionWorker, RUN_SUBJECT } from './worker/worker.js';
import { pipelineRoutes } from './routes/pipelines.js';
import { jobRoutes } from './routes/jobs.js';
import { logRoutes } from './routes/logs.js';
import type { RouteDeps } from './routes/deps.js';

/** Whether job files go in through bind mounts (see DOCKYARD_EXECUTION_FILES). */
function bindFiles(config: ExecutionConfig): boolean {
  if (config.DOCKYARD_EXECUTION_FILES !== 'auto') return config.DOCKYARD_EXECUTION_FILES === 'bind';
  const host = process.env.DOCKER_HOST;
  return (!host || host.startsWith('unix://')) && !existsSync('/.dockerenv');
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The execution service: Kabuto pipelines and the jobs they run in containers. */
export async function buildExecutionApp(config: ExecutionConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'execution',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    outbox: true,
    fastify,
  });
  await app.register(dockerPlugin, {});
  await app.register(multipart, {
    // Keep the client's file name as sent, so `../x` is refused rather than silently cut to `x`.
    preservePath: true,
    limits: {
      fileSize: config.DOCKYARD_EXECUTION_MAX_FILE_BYTES,
      files: config.DOCKYARD_EXECUTION_MAX_FILES,
      fields: 100,
      fieldSize: 1024 * 1024,
      parts: config.DOCKYARD_EXECUTION_MAX_FILES + 100,
      headerPairs: 200,
    },
  });
  const prisma = app.db.prisma as unknown as PrismaClient;
  const doc = await loadDocument<OpenApiDocument>('execution');
  const events = new ExecutionEvents(app.outbox, prisma);
  const stream = app.subjects.stream('EXECUTION');
  const runSubject = app.subjects.of(RUN_SUBJECT);
  await ensureStream(app.nats, stream, [runSubject]);
  const js = jetstream(app.nats);

  const deps: RouteDeps = {
    doc,
    prisma,
    events,
    images: new ImageResolver(app.nats, app.subjects, config.DOCKYARD_EXECUTION_IMAGES),
    blobs: app.blobs,
    config,
    enqueue: async (pipelineId, run, actor) => {
      const msg: ExecutionPipelineRun = { pipelineId, run, actor };
      // A message id of its own per attempt: a submission retried after its transaction rolled back
      // publishes the same run again and must not be dropped as a duplicate of the first.
      await js.publish(runSubject, json.encode(msg), { msgID: `pipeline-${pipelineId}-run-${run}-${randomUUID()}`, timeout: 10_000 });
    },
  };
  const natsDeps = { ...deps, nc: app.nats, subjects: app.subjects };
  if (servesApi(config)) {
    await app.register(pipelineRoutes, deps);
    await app.register(jobRoutes, natsDeps);
    await app.register(logRoutes, natsDeps);
  }

  // Stopping the worker (before NATS drains) stops taking work and leaves running containers for the next worker.
  runWorker(
    app,
    config,
    async () => {
      const info = await app.docker.info();
      const engineId = info.ID as string;
      const localCgroups = info.CgroupDriver === 'cgroupfs' && info.CgroupVersion === '1' && (await access('/sys/fs/cgroup/cpuacct/docker').then(() => true, () => false));
      const runner = new ContainerRunner(app.docker, prisma, app.blobs, app.nats, app.subjects, app.log, {
        deployment: config.DOCKYARD_NATS_PREFIX || 'default',
        engineId,
        localCgroups,
        filesDir: bindFiles(config) ? path.join(serviceDataDir(config, 'execution'), 'jobs') : null,
        pidsLimit: config.DOCKYARD_EXECUTION_PIDS_LIMIT,
        maxResultBytes: config.DOCKYARD_EXECUTION_MAX_RESULT_BYTES,
      });
      return new ExecutionWorker(prisma, app.nats, app.subjects, events, runner, app.log, {
        concurrency: config.DOCKYARD_EXECUTION_CONCURRENCY,
        ackWaitMs: config.DOCKYARD_EXECUTION_ACK_WAIT_MS,
        engineId,
      });
    },
    { name: 'execution worker' },
  );
  return app;
}
