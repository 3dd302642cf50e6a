import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import type Docker from 'dockerode';
import type { FastifyBaseLogger } from 'fastify';
import type { BlobStore } from '@dockyard/kit';
import type { Job, PrismaClient } from '../generated/prisma/client.js';
import { EMPTY_RESULT, inboxTar, storeOutboxDirZip, storeOutboxZip } from './archives.js';
import type { Attachment } from './uploads.js';
import { LogWriter } from './logs.js';
import { removeCgroup, UsageSampler, type Usage } from './usage.js';
import type { NatsConnection, Subjects } from '@dockyard/kit';

/** How a container run ended. */
export interface Outcome {
  state: 'done' | 'failed' | 'killed';
  reason: string | null;
  exitCode: number | null;
  usage: Usage;
  resultKey: string | null;
}

/** Thrown when the worker stops mid-job: the container keeps running and the next worker reattaches. */
export class WorkerStopping extends Error {
  constructor() {
    super('worker stopping');
  }
}

/** Container labels: the job, and the deployment (NATS prefix) it belongs to. */
export const LABEL_JOB = 'dockyard.execution.job';
export const LABEL_DEPLOYMENT = 'dockyard.execution.deployment';

export interface RunnerOptions {
  deployment: string;
  /**
   * Where `/inbox` and `/outbox` live on the engine's host when the engine shares this process's
   * filesystem: bind mounts instead of copying archives in and out through the engine API (each
   * copy costs the engine a helper process, ~100 ms here). Null: archives (a remote engine).
   */
  filesDir: string | null;
  /** The engine shares this host's cgroup v1 tree (cgroupfs driver): jobs get a parent cgroup to measure exactly. */
  localCgroups: boolean;
  engineId: string;
  pidsLimit: number;
  maxResultBytes: number;
}

/** Splits a command into arguments for images without a shell (quotes group, backslash escapes). */
export function splitArgs(command: string): string[] {
  const args: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let has = false;
  for (let i = 0; i < command.length; i++) {
    const c = command[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < command.length) cur += command[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      has = true;
    } else if (c === '\\' && i + 1 < command.length) {
      cur += command[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) args.push(cur);
      cur = '';
      has = false;
    } else cur += c;
  }
  if (has || cur) args.push(cur);
  return args;
}

/**
 * Splits the engine's multiplexed stdout/stderr stream into lines (per stream, in arrival order),
 * skipping the first `skip`. Resolves with the number of complete lines seen (skipped included).
 * A last line without a newline is emitted only when `final` (the container has exited and this
 * read is complete); otherwise it is left to the next read, which counts lines the same way.
 */
function followLines(
  stream: NodeJS.ReadableStream,
  skip: number,
  onLine: (line: string) => boolean,
  drained: () => Promise<void>,
  final: boolean,
): Promise<number> {
  let header = Buffer.alloc(0);
  let need = 0;
  let kind = 1;
  const partial: Record<number, string> = { 1: '', 2: '' };
  // A character split between two frames is decoded whole.
  const decoders: Record<number, StringDecoder> = { 1: new StringDecoder('utf8'), 2: new StringDecoder('utf8') };
  let skipped = 0;
  let seen = 0;
  let paused = false;
  const emit = (line: string) => {
    seen++;
    if (skipped < skip) {
      skipped++;
      return;
    }
    if (!onLine(line.endsWith('\r') ? line.slice(0, -1) : line) && !paused) {
      paused = true;
      stream.pause();
      void drained().finally(() => {
        paused = false;
        stream.resume();
      });
    }
  };
  const text = (k: number, chunk: Buffer) => {
    let s = partial[k] + decoders[k].write(chunk);
    let nl: number;
    while ((nl = s.indexOf('\n')) >= 0) {
      emit(s.slice(0, nl));
      s = s.slice(nl + 1);
    }
    partial[k] = s;
  };
  return new Promise((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      let off = 0;
      while (off < chunk.length) {
        if (need === 0) {
          const take = Math.min(8 - header.length, chunk.length - off);
          header = Buffer.concat([header, chunk.subarray(off, off + take)]);
          off += take;
          if (header.length === 8) {
            kind = header[0] === 2 ? 2 : 1;
            need = header.readUInt32BE(4);
            header = Buffer.alloc(0);
          }
        } else {
          const take = Math.min(need, chunk.length - off);
          text(kind, chunk.subarray(off, off + take));
          off += take;
          need -= take;
        }
      }
    });
    stream.on('end', () => {
      if (final) {
        for (const k of [1, 2]) {
          partial[k] += decoders[k].end();
          if (partial[k]) emit(partial[k]);
        }
      }
      resolve(seen);
    });
    stream.on('error', reject);
  });
}

/** What the worker records as a run progresses. */
export interface RunHooks {
  /** The container exists (not started): record it so a restarted worker finds it. */
  created(containerId: string): Promise<{ killRequested: string | null }>;
  /** The container started: the job is running. False when the job was killed meanwhile. */
  started(): Promise<boolean>;
}

interface Running {
  container: Docker.Container;
  killedBy: string | null;
  timedOut: boolean;
}

/**
 * Runs jobs in containers on one Docker engine: image, limits, `/inbox` in, log lines and usage
 * while it runs, `/outbox` out into the blob store, the container removed at the end by the worker
 * once the outcome is stored. Can also reattach to a container a stopped worker left running.
 */
export class ContainerRunner {
  private readonly running = new Map<number, Running>();
  private readonly shell = new Map<string, boolean>();

  constructor(
    private readonly docker: Docker,
    private readonly prisma: PrismaClient,
    private readonly blobs: BlobStore,
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly log: FastifyBaseLogger,
    private readonly opts: RunnerOptions,
  ) {}

  /** Kills a job's container if it runs here; true when it did. */
  async kill(jobId: number, by: string): Promise<boolean> {
    const r = this.running.get(jobId);
    if (!r) return false;
    r.killedBy ??= by;
    await r.container.kill().catch(() => undefined);
    return true;
  }

  private async ensureImage(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).inspect();
      return;
    } catch {}
    const stream = await this.docker.pull(ref);
    await new Promise<void>((resolve, reject) => this.docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())));
  }

  private async create(job: Job, shell: boolean, files: string | null): Promise<Docker.Container> {
    const argv = shell ? ['/bin/sh', '-c', job.command] : splitArgs(job.command);
    const memory = Number(job.memory);
    const parent = this.opts.localCgroups ? `/dockyard-execution/${this.opts.deployment}job-${job.id}-${randomBytes(4).toString('hex')}` : undefined;
    return this.docker.createContainer({
      Image: job.imageRef,
      Entrypoint: [argv[0]],
      Cmd: argv.slice(1),
      Env: job.env,
      Labels: { [LABEL_JOB]: String(job.id), [LABEL_DEPLOYMENT]: this.opts.deployment },
      Tty: false,
      AttachStdin: false,
      OpenStdin: false,
      NetworkDisabled: !job.network,
      HostConfig: {
        Memory: memory,
        MemorySwap: memory,
        NanoCpus: Number(job.nanoCpus),
        PidsLimit: this.opts.pidsLimit,
        NetworkMode: job.network ? 'bridge' : 'none',
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        LogConfig: { Type: 'json-file', Config: {} },
        CgroupParent: parent,
        Mounts: files
          ? [
              { Type: 'bind', Source: path.join(files, 'inbox'), Target: '/inbox', ReadOnly: false },
              { Type: 'bind', Source: path.join(files, 'outbox'), Target: '/outbox', ReadOnly: false },
            ]
          : undefined,
      },
    });
  }

  /**
   * Runs a job from the start. `hooks.created` records the container before it runs (so a
   * restarted worker can find it); `signal` aborts following (the container keeps running).
   */
  async run(job: Job, signal: AbortSignal, hooks: RunHooks): Promise<Outcome> {
    const zero: Usage = { cpu: 0, memory: 0, io: 0 };
    try {
      await this.ensureImage(job.imageRef);
    } catch (err) {
      return { state: 'failed', reason: `Image ${job.imageRef} is not available: ${(err as Error).message}`, exitCode: null, usage: zero, resultKey: null };
    }
    // A container an earlier attempt created but never started.
    if (job.containerId) await this.remove(job.containerId);
    const attachments = job.attachments as unknown as Attachment[];
    let shell = this.shell.get(job.imageRef) ?? true;
    let container: Docker.Container | null = null;
    for (;;) {
      container = null;
      if (shell === false && !splitArgs(job.command).length) {
        return { state: 'failed', reason: 'The command is empty', exitCode: null, usage: zero, resultKey: null };
      }
      let files: string | null = null;
      try {
        files = this.opts.filesDir ? await this.prepareFiles(job, attachments) : null;
        container = await this.create(job, shell, files);
        if (!files) await container.putArchive(inboxTar(this.blobs, attachments), { path: '/' });
      } catch (err) {
        // An outcome, not a retry of the whole pipeline: the same request would fail again.
        if (container) await this.remove(container.id);
        else if (files) await rm(files, { recursive: true, force: true });
        const message = (err as Error).message.replace(/^\(HTTP code \d+\) [a-z ]+ - /, '');
        return { state: 'failed', reason: `The container could not be created: ${message}`, exitCode: null, usage: zero, resultKey: null };
      }
      // The first job of an image tells whether it has a shell (cached per image and process).
      if (shell && !this.shell.has(job.imageRef)) {
        const hasShell = await container.infoArchive({ path: '/bin/sh' }).then(
          () => true,
          (err: { statusCode?: number }) => err.statusCode !== 404,
        );
        this.shell.set(job.imageRef, hasShell);
        if (!hasShell) {
          await this.remove(container.id);
          shell = false;
          continue;
        }
      }
      const { killRequested } = await hooks.created(container.id);
      const entry: Running = { container, killedBy: null, timedOut: false };
      this.running.set(job.id, entry);
      if (killRequested) entry.killedBy = killRequested;
      if (entry.killedBy) {
        this.running.delete(job.id);
        return { state: 'killed', reason: `Killed by ${entry.killedBy}`, exitCode: null, usage: zero, resultKey: null };
      }
      try {
        await container.start();
      } catch (err) {
        this.running.delete(job.id);
        await this.remove(container.id);
        const message = (err as Error).message;
        // An image without /bin/sh: run the command split into arguments instead.
        if (shell && /\/bin\/sh.*(no such file|not found)/i.test(message)) {
          shell = false;
          this.shell.set(job.imageRef, false);
          continue;
        }
        return { state: 'failed', reason: `The container could not start: ${message.replace(/^\(HTTP code \d+\) [a-z ]+ - /, '')}`, exitCode: null, usage: zero, resultKey: null };
      }
      this.shell.set(job.imageRef, shell);
      // Outside the try above: the hook failing (PostgreSQL or NATS away) is no fault of the job's.
      // It propagates, the work item is retried, and the next attempt reattaches or starts again.
      // Killed between creation and start: stop it at once; the outcome says killed.
      const go = await hooks.started().catch((err: unknown) => {
        this.running.delete(job.id);
        throw err;
      });
      if (!go) {
        entry.killedBy ??= 'a kill request';
        await container.kill().catch(() => undefined);
      }
      break;
    }
    return this.follow(job, container, 0, signal);
  }

  /** Follows a container a previous worker started: the lines it already stored are skipped. */
  /** Whether the container exists and was started (running or exited, not just created). */
  async wasStarted(containerId: string): Promise<boolean> {
    try {
      const { State } = await this.docker.getContainer(containerId).inspect();
      return State.Status !== 'created' && !State.StartedAt.startsWith('0001-');
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return false;
      throw err;
    }
  }

  async reattach(job: Job, signal: AbortSignal): Promise<Outcome | null> {
    if (!job.containerId) return null;
    const container = this.docker.getContainer(job.containerId);
    try {
      await container.inspect();
    } catch (err) {
      // Gone for certain only on a 404; anything else (the engine busy or restarting) is retried.
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw err;
    }
    this.running.set(job.id, { container, killedBy: job.killRequested, timedOut: false });
    // A kill asked for while no worker watched it.
    if (job.killRequested) await container.kill().catch(() => undefined);
    const stored = await this.prisma.jobLog.count({ where: { jobId: job.id } });
    return this.follow(job, container, Math.max(0, stored - job.logBase), signal);
  }

  private async follow(job: Job, container: Docker.Container, skip: number, signal: AbortSignal): Promise<Outcome> {
    const entry = this.running.get(job.id)!;
    const logs = new LogWriter(this.prisma, this.nc, this.subjects, job.id);
    const started = await container.inspect();
    const parent = this.opts.localCgroups ? started.HostConfig.CgroupParent || null : null;
    const sampler = new UsageSampler(container, parent, started.State.Pid ?? 0);
    await sampler.start();
    const logStream = (await container.logs({ follow: true, stdout: true, stderr: true })) as unknown as NodeJS.ReadableStream;
    const lines = followLines(logStream, skip, (line) => logs.write(line), () => logs.drained(), false);
    const elapsed = job.startedAt ? Date.now() - job.startedAt.getTime() : 0;
    const timer = setTimeout(
      () => {
        entry.timedOut = true;
        void container.kill().catch(() => undefined);
      },
      Math.max(0, job.timeout * 1000 - elapsed),
    );
    let stop = () => undefined as void;
    const aborted = new Promise<never>((_, reject) => {
      stop = () => reject(new WorkerStopping());
      if (signal.aborted) stop();
      signal.addEventListener('abort', stop, { once: true });
    });
    aborted.catch(() => undefined);
    const unlisten = () => signal.removeEventListener('abort', stop);
    try {
      await Promise.race([container.wait(), aborted]);
      const seen = await Promise.race([lines, aborted]);
      // The engine may end a follow early when the container exits while the reader lags (a job
      // printing fast while its lines are being stored): read the exited container's whole log
      // once more and keep what the follow missed, so no line is lost.
      const rest = (await container.logs({ follow: true, stdout: true, stderr: true })) as unknown as NodeJS.ReadableStream;
      await Promise.race([followLines(rest, seen, (line) => logs.write(line), () => logs.drained(), true), aborted]);
    } catch (err) {
      unlisten();
      clearTimeout(timer);
      (logStream as unknown as { destroy?: () => void }).destroy?.();
      await sampler.stop(false);
      await logs.flush().catch(() => undefined);
      this.running.delete(job.id);
      throw err;
    }
    unlisten();
    clearTimeout(timer);
    const usage = await sampler.stop(true);
    await logs.flush();
    const info = await container.inspect();
    const exitCode = info.State.ExitCode ?? null;
    this.running.delete(job.id);
    const fresh = await this.prisma.job.findUnique({ where: { id: job.id }, select: { killRequested: true } });
    const killedBy = entry.killedBy ?? fresh?.killRequested ?? null;

    let state: Outcome['state'] = 'done';
    let reason: string | null = null;
    if (killedBy) {
      state = 'killed';
      reason = `Killed by ${killedBy}`;
    } else if (entry.timedOut) {
      state = 'failed';
      reason = `Timed out after ${job.timeout} s (the container was killed)`;
    } else if (info.State.OOMKilled) {
      state = 'failed';
      reason = `Out of memory: the command exceeded the job's memory limit of ${Number(job.memory)} bytes`;
    } else if (exitCode !== 0) {
      state = 'failed';
      reason = `The command exited with code ${exitCode}`;
    }
    let resultKey: string | null = null;
    if (state === 'done') {
      resultKey = `results/${job.id}/${container.id.slice(0, 12)}.zip`;
      const outboxDir = this.boundDir(info, '/outbox');
      let outbox: NodeJS.ReadableStream | null = null;
      if (!outboxDir) {
        try {
          outbox = (await container.getArchive({ path: '/outbox' })) as unknown as NodeJS.ReadableStream;
        } catch (err) {
          if ((err as { statusCode?: number }).statusCode !== 404) throw err;
        }
      }
      try {
        // An empty /outbox (the common case) needs no blob: downloads get the empty zip.
        if (outboxDir && (await readdir(outboxDir)).length === 0) resultKey = EMPTY_RESULT;
        else if (outboxDir) await storeOutboxDirZip(this.blobs, resultKey, outboxDir, this.opts.maxResultBytes);
        else await storeOutboxZip(this.blobs, resultKey, outbox as never, this.opts.maxResultBytes);
      } catch (err) {
        state = 'failed';
        reason = `The results in /outbox could not be kept: ${(err as Error).message}`;
        resultKey = null;
      }
    }
    return { state, reason, exitCode, usage, resultKey };
  }

  /** The host directory bind-mounted at `target`, if it is one of ours. */
  private boundDir(info: Docker.ContainerInspectInfo, target: string): string | null {
    const mount = info.Mounts?.find((m) => m.Destination === target && m.Type === 'bind');
    if (!mount || !this.opts.filesDir || !mount.Source.startsWith(this.opts.filesDir + path.sep)) return null;
    return mount.Source;
  }

  /** A fresh host directory with the job's attachments in `inbox/` and an empty, world-writable `outbox/`. */
  private async prepareFiles(job: Job, attachments: Attachment[]): Promise<string> {
    const dir = path.join(this.opts.filesDir!, `job-${job.id}-${randomBytes(4).toString('hex')}`);
    await mkdir(path.join(dir, 'inbox'), { recursive: true });
    await mkdir(path.join(dir, 'outbox'));
    await chmod(path.join(dir, 'inbox'), 0o777);
    await chmod(path.join(dir, 'outbox'), 0o777);
    for (const a of attachments) {
      await pipeline(await this.blobs.get(a.key), createWriteStream(path.join(dir, 'inbox', a.name), { flags: 'wx', mode: 0o644 }));
    }
    return dir;
  }

  /** Removes a job's container (with its parent cgroup and files directory) once its outcome is stored. */
  async remove(containerId: string): Promise<void> {
    const container = this.docker.getContainer(containerId);
    const info = await container.inspect().catch(() => null);
    const parent = this.opts.localCgroups ? (info?.HostConfig.CgroupParent ?? null) : null;
    const inbox = info ? this.boundDir(info, '/inbox') : null;
    await container
      .remove({ force: true })
      .then(async () => {
        await removeCgroup(parent);
        if (inbox) await rm(path.dirname(inbox), { recursive: true, force: true });
      })
      .catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) this.log.warn({ err, containerId }, 'container not removed');
      });
  }

  /** Job parent cgroups of this deployment left behind (a container removed by someone else), by job id. */
  async cgroups(): Promise<Map<number, string>> {
    if (!this.opts.localCgroups) return new Map();
    const names = await readdir('/sys/fs/cgroup/memory/dockyard-execution').catch(() => [] as string[]);
    const mine = `${this.opts.deployment}job-`;
    return new Map(
      names.filter((n) => n.startsWith(mine)).map((n) => [Number(n.slice(mine.length).split('-')[0]), `/dockyard-execution/${n}`] as const),
    );
  }

  /** Containers of this deployment on this engine, by job id. */
  async containers(): Promise<Map<number, Docker.ContainerInfo>> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_DEPLOYMENT}=${this.opts.deployment}`] } });
    return new Map(list.map((c) => [Number(c.Labels[LABEL_JOB]), c]));
  }
}
