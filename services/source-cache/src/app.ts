import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { consumeWorkQueue, createService, ensureStream, json, parseGitPolicy, runWorker, servesApi, serviceDataDir, type OpenApiDocument } from '@dockyard/kit';
import { loadDocument } from '@dockyard/contracts';
import { PrismaClient } from './generated/prisma/client.js';
import type { SourceCacheConfig } from './config.js';
import { ArtifactCache } from './domain/cache.js';
import { Requests, RequestViews, type RequestRow } from './domain/requests.js';
import { requestRoutes } from './routes/requests.js';
import { statusRoutes } from './routes/status.js';
import { viewRoutes } from './routes/views.js';
import { RequestProcessor } from './worker/process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The work-queue subject requests travel on to the workers. */
export const WORK_SUBJECT = 'work.source-cache.request';
const PING_SUBJECT = 'source-cache.worker.ping';

export interface SourceCache {
  cache: ArtifactCache;
  requests: Requests;
  processor: RequestProcessor;
  /** Marks requests older than the configured age (or than `now` - age) stale, deleting bundles and logs. */
  sweepStale(now?: Date): Promise<number>;
}

declare module 'fastify' {
  interface FastifyInstance {
    sourceCache: SourceCache;
  }
}

export interface SourceCacheAppOptions {
  fastify?: Partial<FastifyServerOptions>;
  /** Host resolution for the git policy (tests). */
  resolve?: (host: string) => Promise<string[]>;
}

/** Deletes this deployment's work and event streams (test and benchmark runs clean up with it). */
export async function dropStreams(app: FastifyInstance): Promise<void> {
  const jsm = await jetstreamManager(app.nats);
  for (const name of [app.subjects.stream('SOURCE_CACHE_WORK'), app.subjects.stream('EVENTS')]) await jsm.streams.delete(name).catch(() => undefined);
}

/** The source-cache service: cachito requests: sources and their dependencies, bundled, with manifests and SBOMs. */
export async function buildSourceCacheApp(config: SourceCacheConfig, opts: SourceCacheAppOptions = {}): Promise<FastifyInstance> {
  const app = await createService({
    service: 'source-cache',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    outbox: true,
    fastify: opts.fastify,
  });
  const prisma = app.db.prisma as unknown as PrismaClient;
  const doc = await loadDocument<OpenApiDocument>('source-cache');
  const dataDir = serviceDataDir(config, 'source-cache');
  const policy = parseGitPolicy(config.DOCKYARD_GIT_ALLOW);
  const cache = new ArtifactCache(path.join(dataDir, 'cache'), config.DOCKYARD_CACHITO_MAX_ARTIFACT_MB * 1024 * 1024);
  const upstreams = { npm: config.DOCKYARD_NPM_REGISTRY, pypi: config.DOCKYARD_PYPI_INDEX, goproxy: config.DOCKYARD_GOPROXY };

  const requests = new Requests(prisma, app.outbox);
  const views = new RequestViews(config.DOCKYARD_PUBLIC_URL);

  const stream = app.subjects.stream('SOURCE_CACHE_WORK');
  const workSubject = app.subjects.of(WORK_SUBJECT);
  await ensureStream(app.nats, stream, [workSubject]);
  const js = jetstream(app.nats);
  const enqueue = async (id: number) => {
    await js.publish(workSubject, json.encode({ id }), { msgID: `cachito-request-${id}` });
  };

  const processor = new RequestProcessor({
    requests,
    blobs: app.blobs,
    cache,
    policy,
    workDir: path.join(dataDir, 'work'),
    upstreams,
    publicUrl: config.DOCKYARD_PUBLIC_URL,
    cloneTimeoutMs: config.DOCKYARD_CACHITO_CLONE_TIMEOUT_S * 1000,
    maxRepoBytes: config.DOCKYARD_CACHITO_MAX_REPO_MB * 1024 * 1024,
    maxAttempts: config.DOCKYARD_CACHITO_MAX_ATTEMPTS,
    log: app.log,
  });

  const sweepStale = async (now = new Date()) => {
    const before = new Date(now.getTime() - config.DOCKYARD_CACHITO_STALE_AFTER_HOURS * 3_600_000);
    let n = 0;
    for (const row of await requests.staleCandidates(before)) {
      if (row.bundleKey) await app.blobs.delete(row.bundleKey);
      // Conditional: a second sweeper (another worker) finding the same row marks it once.
      if (await requests.markStale(row.id)) n++;
    }
    return n;
  };
  app.decorate('sourceCache', { cache, requests, processor, sweepStale });

  if (servesApi(config)) await sourceCacheApi();

  // Stopping the worker (before NATS drains) hands unfinished requests back to the queue.
  const name = `source-cache@${os.hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  let ping: ReturnType<typeof app.nats.subscribe> | null = null;
  let stopConsuming: (() => Promise<void>) | null = null;
  let sweeper: NodeJS.Timeout | null = null;
  runWorker(
    app,
    config,
    () => ({
      async start() {
        if (!ping) {
          const sub = (ping = app.nats.subscribe(app.subjects.of(PING_SUBJECT)));
          void (async () => {
            for await (const msg of sub) msg.respond(json.encode({ name }));
          })();
        }
        stopConsuming = await consumeWorkQueue<{ id: number }>({
          nc: app.nats,
          stream,
          subject: workSubject,
          durable: 'source-cache-workers',
          log: app.log,
          ackWaitMs: config.DOCKYARD_CACHITO_ACK_WAIT_MS,
          concurrency: config.DOCKYARD_CACHITO_WORKER_CONCURRENCY,
          handle: async ({ id }, msg) => processor.process(id, msg.info.deliveryCount),
        });
        sweeper = setInterval(() => void sweepStale().catch((err) => app.log.error({ err }, 'stale sweep failed')), 10 * 60_000);
        sweeper.unref();
      },
      async stop() {
        if (sweeper) clearInterval(sweeper);
        ping?.unsubscribe();
        await stopConsuming?.();
      },
    }),
    { name: 'source-cache worker' },
  );
  return app;

  /** HTTP routes (DOCKYARD_ROLE api or all). */
  async function sourceCacheApi(): Promise<void> {
    await app.register(requestRoutes, { doc, requests, views, blobs: app.blobs, policy, enabled: config.DOCKYARD_CACHITO_PKG_MANAGERS, defaults: config.DOCKYARD_CACHITO_DEFAULT_PKG_MANAGERS, enqueue, resolve: opts.resolve });
    await app.register(viewRoutes, { requests, views, cache });

    const upstreamCheck = (url: string) => async () => {
      const res = await fetch(url, { method: 'GET', signal: AbortSignal.timeout(3000) });
      await res.body?.cancel();
      if (res.status >= 500) throw new Error(`${res.status}: ${res.statusText}`);
    };
    await app.register(statusRoutes, {
      doc,
      services: [
        { name: 'database', check: async () => void (await app.db.ping()) },
        { name: 'nats', check: async () => void (await app.nats.flush()) },
        { name: 'npm-registry', check: upstreamCheck(upstreams.npm) },
        { name: 'pypi-index', check: upstreamCheck(upstreams.pypi) },
        { name: 'goproxy', check: upstreamCheck(upstreams.goproxy) },
      ],
      workers: async () => {
        const out: { name: string; ok: boolean }[] = [];
        try {
          for await (const msg of await app.nats.requestMany(app.subjects.of(PING_SUBJECT), json.encode({}), { strategy: 'stall', stall: 300, maxWait: 3000 })) {
            out.push({ name: json.decode<{ name: string }>(msg.data).name, ok: true });
          }
        } catch {}
        return out;
      },
      needs: Object.fromEntries(
        config.DOCKYARD_CACHITO_PKG_MANAGERS.map((pm) => [pm, ['database', 'nats', ...({ npm: ['npm-registry'], yarn: ['npm-registry'], pip: ['pypi-index'], gomod: ['goproxy'] }[pm] ?? [])]]),
      ),
    });
  }
}
