import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import multipart from '@fastify/multipart';
import {
  createService,
  dockerPlugin,
  ensureStream,
  runWorker,
  runsWorkers,
  servesApi,
  parseGitPolicy,
  PermissionsClient,
  serveRequests,
  serviceDataDir,
  type OpenApiDocument,
} from '@dockyard/kit';
import {
  loadDocument,
  type BuildCancelReply,
  type BuildCancelRequest,
  type BuildImageGetReply,
  type BuildImageGetRequest,
  type BuildRequestReply,
  type BuildRequestRequest,
} from '@dockyard/contracts';
import { PrismaClient } from './generated/prisma/client.js';
import type { BuildConfig } from './config.js';
import { Builds, WORK_STREAM, WORK_SUBJECT } from './domain/builds.js';
import { requestBuild } from './domain/requests.js';
import { Builder } from './worker/builder.js';
import { imageRoutes } from './routes/images.js';
import { ecrRoutes } from './routes/ecr.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

declare module 'fastify' {
  interface FastifyInstance {
    builds: Builds;
    builder: Builder | null;
  }
}

/** The build service: every image build on the Docker engine: ECR app builds, Kabuto images, REE environments. */
export async function buildBuildApp(config: BuildConfig, fastify?: Partial<FastifyServerOptions>): Promise<FastifyInstance> {
  const app = await createService({
    service: 'build',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    outbox: true,
    fastify,
  });
  await app.register(dockerPlugin, { registry: config.DOCKYARD_REGISTRY });
  const limits = { maxBytes: config.DOCKYARD_BUILD_CONTEXT_MAX_BYTES, maxFiles: config.DOCKYARD_BUILD_CONTEXT_MAX_FILES };
  await app.register(multipart, {
    // Raw part names, so an attachment called "../x" is refused rather than silently renamed.
    preservePath: true,
    limits: { fileSize: limits.maxBytes, files: limits.maxFiles, fields: 20, fieldSize: 1024 * 1024, parts: limits.maxFiles + 20 },
  });
  const prisma = app.db.prisma as unknown as PrismaClient;
  const builds = new Builds(prisma, app.nats, app.subjects, app.outbox);
  const policy = parseGitPolicy(config.DOCKYARD_GIT_ALLOW);
  const permissions = new PermissionsClient(app.nats, app.subjects);
  const dataDir = serviceDataDir(config, 'build');
  app.decorate('builds', builds);
  // Every role may publish builds (api) or consume them (worker): whichever starts first makes the queue.
  await ensureStream(app.nats, app.subjects.stream(WORK_STREAM), [app.subjects.of(`${WORK_SUBJECT}.>`)]);

  if (servesApi(config)) await buildApi(app, { config, builds, prisma, permissions, policy, limits, dataDir });

  const builder = runsWorkers(config)
    ? new Builder({
        builds,
        docker: app.docker,
        nc: app.nats,
        blobs: app.blobs,
        log: app.log,
        policy,
        registry: config.DOCKYARD_REGISTRY,
        workDir: path.join(dataDir, 'work'),
        concurrency: config.DOCKYARD_BUILD_CONCURRENCY,
        timeoutMs: config.DOCKYARD_BUILD_TIMEOUT_S * 1000,
        ackWaitMs: config.DOCKYARD_BUILD_ACK_WAIT_MS,
        maxAttempts: config.DOCKYARD_BUILD_MAX_ATTEMPTS,
        limits,
        platforms: config.DOCKYARD_BUILD_PLATFORMS?.split(','),
      })
    : null;
  // The engine may be down at start: the API still queues builds; the worker keeps trying to start.
  // Stopping it (before NATS drains) hands running builds back to the queue for another worker.
  runWorker(app, config, () => builder!, { name: 'build worker' });
  app.decorate('builder', builder);
  return app;
}

/** HTTP routes and NATS request/reply (DOCKYARD_ROLE api or all). */
async function buildApi(
  app: FastifyInstance,
  { config, builds, prisma, permissions, policy, limits, dataDir }: { config: BuildConfig; builds: Builds; prisma: PrismaClient; permissions: PermissionsClient; policy: ReturnType<typeof parseGitPolicy>; limits: { maxBytes: number; maxFiles: number }; dataDir: string },
): Promise<void> {
  const doc = await loadDocument<OpenApiDocument>('build');
  await app.register(ecrRoutes, { doc, builds, permissions, policy, registry: config.DOCKYARD_REGISTRY });
  await app.register(imageRoutes, { doc, builds, policy, registry: config.DOCKYARD_REGISTRY, limits, tmpDir: path.join(dataDir, 'uploads') });

  serveRequests<BuildImageGetRequest, BuildImageGetReply>(
    app.nats,
    app.subjects.of('build.image.get'),
    async ({ id }) => {
      if (!/^[1-9][0-9]{0,9}$/.test(String(id))) return { image: null };
      const image = await prisma.image.findUnique({ where: { id: Number(id) } });
      return { image: image && { id: String(image.id), owner: image.owner, name: image.name, reference: image.reference, state: 'SUCCESS' } };
    },
    app.log,
  );
  serveRequests<BuildRequestRequest, BuildRequestReply>(
    app.nats,
    app.subjects.of('build.request'),
    async (req) => ({ buildId: (await requestBuild(builds, req)).id }),
    app.log,
  );
  // Another service no longer needs a build it asked for: a queued one ends ABORTED at once, a running one is stopped.
  serveRequests<BuildCancelRequest, BuildCancelReply>(
    app.nats,
    app.subjects.of('build.cancel'),
    async ({ buildId }) => {
      const build = typeof buildId === 'string' ? await prisma.build.findUnique({ where: { id: buildId } }) : null;
      if (!build) return { state: null };
      if (build.state === 'QUEUED' || build.state === 'BUILDING') await builds.abort(build);
      return { state: (await prisma.build.findUniqueOrThrow({ where: { id: buildId } })).state };
    },
    app.log,
  );
}
