import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { FastifyBaseLogger } from 'fastify';
import type { NatsConnection } from '@nats-io/transport-node';
import { consumeWorkQueue, deleteBuildContext, getBuildContext, json, type BlobStore, type GitPolicy } from '@dockyard/kit';
import type { Build } from '../generated/prisma/client.js';
import { ANY_PLATFORM, WORK_STREAM, WORK_SUBJECT, normalizePlatform, platformToken, platformsOf, specOf, type Builds } from '../domain/builds.js';
import { packEntries, sanitizeTar, scanContext, type ContextLimits } from '../domain/context.js';
import { checkout } from '../domain/git.js';
import { LogSink } from '../domain/logs.js';
import { BuildFailure, TERMINAL, type PlatformState, type Result } from '../domain/types.js';

export interface BuilderOptions {
  builds: Builds;
  docker: Docker;
  nc: NatsConnection;
  blobs: BlobStore;
  log: FastifyBaseLogger;
  policy: GitPolicy;
  registry: string;
  workDir: string;
  concurrency: number;
  timeoutMs: number;
  ackWaitMs: number;
  maxAttempts: number;
  limits: ContextLimits;
  /** Platforms this worker builds; default the engine's own. */
  platforms?: string[];
}

type StopReason = 'abort' | 'timeout' | 'shutdown';

interface Outcome {
  result: Result;
  errorSource?: 'build' | 'service' | null;
  error?: string | null;
  image?: string | null;
  digest?: string | null;
  platforms?: PlatformState[];
}

export { normalizePlatform };

/** Splits `host:5000/ns/name:tag` into repository and tag. */
export function splitReference(ref: string): { repository: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repository: ref, tag: 'latest' };
}

/**
 * The build worker: takes builds from the JetStream work queue, `concurrency` at a time, builds
 * them on the Docker engine, pushes, stores the result and only then acknowledges. A build whose
 * previous worker stopped mid-way is retried (up to `maxAttempts`), then ends FAILURE with the
 * reason; a sweep ends builds whose worker vanished without a trace. Never left "building".
 */
export class Builder {
  readonly id = `${os.hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly running = new Map<string, AbortController>();
  private stopConsumer: (() => Promise<void>) | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private closing = false;
  private hostPlatforms: string[] = [];

  constructor(private readonly o: BuilderOptions) {}

  get staleMs(): number {
    return Math.max(4 * this.o.ackWaitMs, 60_000);
  }

  async start(): Promise<void> {
    const version = await this.o.docker.version();
    this.hostPlatforms = (this.o.platforms?.length ? this.o.platforms : [`${version.Os}/${version.Arch}`]).map(normalizePlatform);
    await mkdir(this.o.workDir, { recursive: true });
    // start() may be called again after a failure: subscribe and schedule only once.
    if (!this.sweepTimer) {
      const abortSub = this.o.nc.subscribe(this.o.builds.subjects.of('build.abort'));
      void (async () => {
        for await (const m of abortSub) {
          const { buildId } = json.decode<{ buildId: string }>(m.data);
          this.running.get(buildId)?.abort('abort' satisfies StopReason);
        }
      })();
      this.sweepTimer = setInterval(() => void this.sweep().catch((err) => this.o.log.error({ err }, 'build sweep failed')), Math.min(60_000, this.staleMs / 2));
      this.sweepTimer.unref();
    }
    await this.sweep();
    // One work subject (and shared durable consumer) per platform this worker announces, plus
    // builds that name no platform: a build only reaches workers that can build it; one for a
    // platform no worker announces stays QUEUED until such a worker starts.
    const { subjects } = this.o.builds;
    const stops: (() => Promise<void>)[] = [];
    for (const token of [...new Set(this.hostPlatforms.map(platformToken)), ANY_PLATFORM]) {
      stops.push(
        await consumeWorkQueue<{ buildId: string }>({
          nc: this.o.nc,
          stream: subjects.stream(WORK_STREAM),
          subject: subjects.of(`${WORK_SUBJECT}.${token}`),
          streamSubjects: [subjects.of(`${WORK_SUBJECT}.>`)],
          durable: `build-workers-${token}`,
          handle: (payload) => this.handle(payload.buildId),
          log: this.o.log,
          ackWaitMs: this.o.ackWaitMs,
          concurrency: this.o.concurrency,
          // Attempts are counted by the handler; JetStream must keep redelivering until it acks.
          maxDeliver: 100,
        }),
      );
    }
    this.stopConsumer = async () => void (await Promise.all(stops.map((stop) => stop())));
  }

  /** The platforms this worker builds (known once started). */
  get platforms(): string[] {
    return [...this.hostPlatforms];
  }

  /** Stops taking builds; builds in progress are stopped and handed back to the queue (another worker retries them). */
  async stop(): Promise<void> {
    this.closing = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const ctrl of this.running.values()) ctrl.abort('shutdown' satisfies StopReason);
    await this.stopConsumer?.();
  }

  /** Ends builds whose worker stopped sending heartbeats long ago (no redelivery will come for them). */
  async sweep(): Promise<void> {
    const stale = await this.o.builds.prisma.build.findMany({
      where: {
        state: 'BUILDING',
        OR: [{ heartbeatAt: { lt: new Date(Date.now() - this.staleMs) } }, { heartbeatAt: null, startedAt: { lt: new Date(Date.now() - this.staleMs) } }],
      },
      select: { id: true, worker: true },
    });
    for (const b of stale) {
      await this.o.builds.finish(b.id, ['BUILDING'], {
        result: 'FAILURE',
        errorSource: 'service',
        error: `The worker building this (${b.worker}) stopped mid-build and did not come back within ${Math.round(this.staleMs / 1000)} s`,
      });
    }
  }

  private async handle(buildId: string): Promise<void> {
    // Shutting down: hand the message back at once (nak), another worker takes it.
    if (this.closing) throw new Error('worker shutting down');
    const { builds } = this.o;
    const build = await builds.prisma.build.findUnique({ where: { id: buildId } });
    if (!build || TERMINAL.has(build.state)) return;
    const sink = new LogSink(builds.prisma, this.o.nc, builds.subjects, build.id);
    if (build.abortRequested) {
      await builds.finish(build.id, ['QUEUED', 'BUILDING'], { result: 'ABORTED', error: 'Aborted' });
      return;
    }
    if (build.state === 'BUILDING') {
      if (this.running.has(build.id)) return;
      // A live worker's heartbeat is at most a third of the ack wait old: leave the build to it
      // (nak, asked again shortly). A worker that shut down cleared its heartbeat: retry at once.
      const age = build.heartbeatAt ? Date.now() - build.heartbeatAt.getTime() : Number.POSITIVE_INFINITY;
      if (age < this.o.ackWaitMs) throw new Error(`build ${build.id} is still held by worker ${build.worker}`);
      // Redelivered: the worker that had it stopped mid-build (killed, or shut down).
      if (build.attempts >= this.o.maxAttempts) {
        sink.line(`The worker building this (${build.worker}) stopped mid-build; ${build.attempts} attempt(s) made, giving up`);
        await sink.flush();
        await builds.finish(build.id, ['BUILDING'], {
          result: 'FAILURE',
          errorSource: 'service',
          error: `The worker building this stopped mid-build (${build.attempts} of ${this.o.maxAttempts} attempts made)`,
        });
        return;
      }
      sink.line(`--- The worker building this (${build.worker}) stopped mid-build; retrying (attempt ${build.attempts + 1} of ${this.o.maxAttempts}) ---`);
    }
    const now = new Date();
    const claimed = await builds.prisma.build.updateMany({
      where: { id: build.id, state: { in: ['QUEUED', 'BUILDING'] } },
      data: { state: 'BUILDING', worker: this.id, attempts: { increment: 1 }, heartbeatAt: now, startedAt: build.startedAt ?? now },
    });
    if (!claimed.count) return;
    const current = await builds.prisma.build.findUniqueOrThrow({ where: { id: build.id } });
    await builds.event('started', current, null, { worker: this.id, platforms: platformsOf(current).map((p) => p.platform) });

    const ctrl = new AbortController();
    this.running.set(build.id, ctrl);
    const timer = setTimeout(() => ctrl.abort('timeout' satisfies StopReason), this.o.timeoutMs);
    const heartbeat = setInterval(() => {
      void builds.prisma.build
        .update({ where: { id: build.id }, data: { heartbeatAt: new Date() }, select: { abortRequested: true } })
        .then((b) => b.abortRequested && ctrl.abort('abort' satisfies StopReason))
        .catch(() => undefined);
    }, Math.min(10_000, this.o.ackWaitMs / 3));
    let outcome: Outcome;
    try {
      outcome = await this.execute(current, ctrl.signal, sink);
    } catch (err) {
      const reason = ctrl.signal.aborted ? (ctrl.signal.reason as StopReason) : null;
      if (reason === 'shutdown') {
        sink.line('--- This worker is shutting down; the build goes back to the queue ---');
        await sink.flush().catch(() => undefined);
        // Released: the next worker need not wait for this heartbeat to age.
        await builds.prisma.build.updateMany({ where: { id: build.id, worker: this.id }, data: { heartbeatAt: null } }).catch(() => undefined);
        throw new Error('worker shutting down mid-build');
      }
      if (reason === 'abort') outcome = { result: 'ABORTED', error: 'Aborted' };
      else if (reason === 'timeout') outcome = { result: 'FAILURE', errorSource: 'build', error: `The build exceeded the time limit of ${Math.round(this.o.timeoutMs / 1000)} s` };
      else if (err instanceof BuildFailure) outcome = { result: 'FAILURE', errorSource: 'build', error: err.message };
      else {
        this.o.log.error({ err, buildId: build.id }, 'build failed in the service');
        outcome = { result: 'FAILURE', errorSource: 'service', error: (err as Error).message };
      }
      if (outcome.error) sink.line(outcome.error);
    } finally {
      clearTimeout(timer);
      clearInterval(heartbeat);
      this.running.delete(build.id);
    }
    await sink.flush();
    const spec = specOf(current);
    const image = current.kind === 'kabuto' ? { owner: current.owner ?? '', name: current.name ?? '', dockerfile: spec.dockerfileText ?? null, reference: outcome.image ?? '' } : undefined;
    await builds.finish(current.id, ['BUILDING'], outcome, image);
    await this.dropContext(current).catch(() => undefined);
  }

  private async dropContext(build: Build): Promise<void> {
    const { context } = specOf(build);
    if (context.source === 'blob') await this.o.blobs.delete(context.key);
    else if (context.source === 'object') await deleteBuildContext(this.o.nc, this.o.builds.subjects, context.name);
  }

  private async execute(build: Build, signal: AbortSignal, sink: LogSink): Promise<Outcome> {
    const spec = specOf(build);
    // No platform asked for: the worker's own.
    const asked = spec.platforms.length ? spec.platforms : [this.hostPlatforms[0]];
    const platforms: PlatformState[] = asked.map((platform) => ({ platform, state: 'QUEUED', digest: null, error: null }));
    const save = () => this.o.builds.prisma.build.update({ where: { id: build.id }, data: { platforms: platforms as object[] } });
    const several = platforms.length > 1;
    const buildable = platforms.filter((p) => this.hostPlatforms.includes(normalizePlatform(p.platform)));
    for (const p of platforms) {
      if (!buildable.includes(p)) {
        p.state = 'FAILURE';
        p.error = `No worker can build for platform ${p.platform} (this service builds ${this.hostPlatforms.join(', ')})`;
        sink.line(p.error, several ? p.platform : null);
      }
    }
    await save();
    const work = await mkdtemp(path.join(this.o.workDir, `${build.id}-`));
    try {
      let open: () => Promise<Readable>;
      let dockerfile = spec.dockerfile;
      if (buildable.length) {
        const ctx = spec.context;
        if (ctx.source === 'git') {
          const src = path.join(work, 'src');
          await checkout({ url: ctx.url, dir: src, policy: this.o.policy, commit: ctx.commit, branch: ctx.branch, tag: ctx.tag, submodules: ctx.submodules, signal, log: (l) => sink.line(l) });
          const contextDir = path.join(src, ctx.directory);
          const entries = await scanContext(contextDir, src, this.o.limits);
          const df = entries.find((e) => e.name === dockerfile);
          if (!df || df.type === 'directory') throw new BuildFailure(`Dockerfile ${dockerfile} not found in ${ctx.directory === '.' ? 'the repository root' : `directory ${ctx.directory}`}`);
          open = async () => packEntries(entries);
        } else if (ctx.source === 'blob') {
          open = () => this.o.blobs.get(ctx.key);
        } else {
          const got = await getBuildContext(this.o.nc, this.o.builds.subjects, ctx.name);
          if (!got) throw new BuildFailure(`The build context ${ctx.name} is not in the object store`);
          const file = path.join(work, 'context.tar');
          const count = await sanitizeTar(got.stream, file, this.o.limits);
          sink.line(`Build context: ${count} entries`);
          open = async () => createReadStream(file);
        }
      } else {
        open = async () => {
          throw new Error('unreachable');
        };
      }
      let image: string | null = null;
      let digest: string | null = null;
      for (const p of buildable) {
        if (signal.aborted) break;
        p.state = 'BUILDING';
        await save();
        const tags = this.tagsFor(build, p.platform, buildable.length > 1);
        const result = await this.dockerBuild(await open(), {
          tags,
          dockerfile,
          buildArgs: spec.buildArgs,
          nocache: build.nocache,
          labels: { 'dockyard.prefix': this.o.builds.subjects.prefix || '-' },
          signal,
          line: (l) => sink.line(l, several ? p.platform : null),
        });
        if (result.error) {
          p.state = 'FAILURE';
          p.error = result.error;
          await save();
          continue;
        }
        const toPush = build.push ? tags.filter((t) => !t.startsWith('dockyard-local/')) : [];
        for (const tag of toPush) {
          const d = await this.push(tag, signal, (l) => sink.line(l, several ? p.platform : null));
          if (!digest || tag === tags[0]) {
            p.digest = d;
            digest = digest ?? d;
            image = image ?? (build.kind === 'kabuto' ? `${splitReference(tag).repository}@${d}` : tag);
          }
        }
        // Nothing pushed: a process build still names its local tag; ECR's skip_image_push shows null.
        if (!toPush.length) image = build.kind === 'ecr' ? null : tags[0];
        p.state = 'SUCCESS';
        await save();
      }
      if (signal.aborted) throw new Error('aborted');
      const failed = platforms.filter((p) => p.state !== 'SUCCESS');
      if (!failed.length) {
        sink.line(image ? `Built and pushed ${image}${digest && !image.includes('@') ? ` (${digest})` : ''}` : `Built ${this.tagsFor(build, platforms[0].platform, false)[0]}`);
        return { result: 'SUCCESS', image, digest, platforms };
      }
      const error = failed.length === 1 ? failed[0].error : failed.map((p) => `${p.platform}: ${p.error}`).join('; ');
      return { result: 'FAILURE', errorSource: 'build', error, image, digest, platforms };
    } finally {
      await rm(work, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** The tags one platform's image gets. */
  private tagsFor(build: Build, platform: string, perPlatform: boolean): string[] {
    const spec = specOf(build);
    const suffix = perPlatform ? `-${normalizePlatform(platform).replace(/^linux\//, '').replace(/\//g, '')}` : '';
    if (spec.repository && spec.tag) return [`${spec.repository}:${spec.tag}${suffix}`];
    if (spec.tags.length) return spec.tags.map((t) => (suffix ? `${t}${suffix}` : t));
    return [`dockyard-local/build:${build.id}${suffix}`];
  }

  private async dockerBuild(
    context: Readable,
    o: { tags: string[]; dockerfile: string; buildArgs: Record<string, string>; nocache: boolean; labels: Record<string, string>; signal: AbortSignal; line: (l: string) => void },
  ): Promise<{ error: string | null }> {
    if (o.signal.aborted) throw new Error('aborted');
    const stream = (await this.o.docker.buildImage(context as unknown as NodeJS.ReadableStream, {
      t: o.tags.length === 1 ? o.tags[0] : (o.tags as unknown as string),
      dockerfile: o.dockerfile,
      buildargs: o.buildArgs,
      nocache: o.nocache,
      labels: o.labels,
      rm: true,
      forcerm: true,
    })) as Readable;
    let error: string | null = null;
    let partial = '';
    // The step container running now (" ---> Running in <id>"): removed on abort, since the
    // engine may keep a RUN step going for a while after the client went away.
    let container: string | null = null;
    const onEvent = (e: { stream?: string; status?: string; id?: string; progressDetail?: { current?: number }; error?: string; errorDetail?: { message?: string } }) => {
      if (e.stream) {
        const text = partial + e.stream;
        const parts = text.split('\n');
        partial = parts.pop() ?? '';
        for (const l of parts) {
          if (!l.trim()) continue;
          const running = /^ ---> Running in ([0-9a-f]{12,64})$/.exec(l);
          if (running) container = running[1];
          o.line(l);
        }
      } else if (e.status && !e.progressDetail?.current) o.line(e.id ? `${e.id}: ${e.status}` : e.status);
      if (e.error) {
        error = e.errorDetail?.message ?? e.error;
        o.line(error);
      }
    };
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        stream.destroy();
        const step = container ? this.o.docker.getContainer(container) : null;
        const removed = step
          ? step
              .kill()
              .catch(() => undefined)
              .then(() => step.remove({ force: true }))
              .catch(() => undefined)
          : Promise.resolve();
        void removed.then(() => reject(new Error('aborted')));
      };
      o.signal.addEventListener('abort', onAbort, { once: true });
      context.once('error', (err) => {
        stream.destroy();
        reject(err);
      });
      this.o.docker.modem.followProgress(
        stream,
        (err: Error | null) => {
          o.signal.removeEventListener('abort', onAbort);
          if (partial.trim()) o.line(partial);
          if (o.signal.aborted) reject(new Error('aborted'));
          else if (err) reject(err);
          else resolve();
        },
        onEvent,
      );
    });
    return { error };
  }

  /** Pushes one tag to its registry; returns the manifest digest. */
  private async push(ref: string, signal: AbortSignal, line: (l: string) => void): Promise<string> {
    const { repository, tag } = splitReference(ref);
    const serveraddress = repository.split('/')[0];
    const stream = (await this.o.docker.getImage(repository).push({ tag, authconfig: { serveraddress } } as never)) as unknown as Readable;
    let digest: string | null = null;
    let error: string | null = null;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        stream.destroy();
        reject(new Error('aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.o.docker.modem.followProgress(
        stream,
        (err: Error | null) => {
          signal.removeEventListener('abort', onAbort);
          if (signal.aborted) reject(new Error('aborted'));
          else if (err) reject(err);
          else resolve();
        },
        (e: { status?: string; id?: string; progressDetail?: { current?: number }; aux?: { Digest?: string }; error?: string }) => {
          if (e.aux?.Digest) digest = e.aux.Digest;
          if (e.error) error = e.error;
          else if (e.status && !e.progressDetail?.current && /^(Pushed|Layer already exists|.*digest:)/.test(e.status)) line(e.id ? `${e.id}: ${e.status}` : e.status);
        },
      );
    });
    if (error || !digest) throw new Error(`Pushing ${ref} failed: ${error ?? 'the registry returned no digest'}`);
    line(`Pushed ${ref} (${digest})`);
    return digest;
  }
}
