import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { consumeWorkQueue } from '@dockyard/kit';
import { WORK_STREAM, WORK_SUBJECT, type Processes, type ProcessKind } from '../domain/processes.js';
import { ZipWriter } from '../domain/zip.js';
import { ProcessFailure, recordingBuild, recordingDefine, sbomDefine, type Job, type StrategyDeps } from './strategies.js';

export interface RunnerOptions extends StrategyDeps {
  processes: Processes;
  workDir: string;
  concurrency: number;
  timeoutMs: number;
  ackWaitMs: number;
  maxAttempts: number;
}

const STRATEGIES: Record<ProcessKind, (deps: StrategyDeps, job: Job, out: ZipWriter) => Promise<void>> = {
  'recording-define': recordingDefine,
  'recording-build': recordingBuild,
  'sbom-define': sbomDefine,
};

/** Runs processes from the JetStream work queue; a process is acked once its outcome is stored. */
export class Runner {
  private stopConsuming: (() => Promise<void>) | null = null;
  private readonly running = new Map<string, AbortController>();

  constructor(private readonly o: RunnerOptions) {}

  async start(): Promise<void> {
    await mkdir(this.o.workDir, { recursive: true });
    this.stopConsuming = await consumeWorkQueue<{ uuid: string }>({
      nc: this.o.nc,
      stream: this.o.subjects.stream(WORK_STREAM),
      subject: this.o.subjects.of(WORK_SUBJECT),
      durable: 'process-workers',
      handle: ({ uuid }) => this.run(uuid),
      log: this.o.log,
      ackWaitMs: this.o.ackWaitMs,
      concurrency: this.o.concurrency,
      maxDeliver: this.o.maxAttempts + 3,
    });
  }

  /** Stops taking work; running processes go back to the queue for another worker. */
  async stop(): Promise<void> {
    for (const ctrl of this.running.values()) ctrl.abort('shutdown');
    await this.stopConsuming?.();
  }

  private async run(uuid: string): Promise<void> {
    const { processes } = this.o;
    const before = await processes.get(uuid);
    if (!before || before.status === 'processed' || before.status === 'failed') return;
    if (before.status === 'processing' && before.attempts >= this.o.maxAttempts) {
      await processes.transition(uuid, ['processing'], 'failed', { reason: `The worker running this process stopped mid-way (${before.attempts} of ${this.o.maxAttempts} attempts made)`, finishedAt: new Date() });
      return;
    }
    const p = await processes.transition(uuid, ['queued', 'processing'], 'processing', { startedAt: new Date(), attempts: { increment: 1 } });
    if (!p) return;
    const log = processes.logger(uuid);
    if (p.attempts > 1) log.line(`--- The worker running this process stopped; retrying (attempt ${p.attempts} of ${this.o.maxAttempts}) ---`);
    log.line(`Process ${uuid} (${p.kind}) started`);
    const ctrl = new AbortController();
    this.running.set(uuid, ctrl);
    const timer = setTimeout(() => ctrl.abort('timeout'), this.o.timeoutMs);
    const work = await mkdtemp(path.join(this.o.workDir, `${uuid}-`));
    try {
      const input = path.join(work, 'input.zip');
      await pipeline(await this.o.blobs.get(p.inputKey), createWriteStream(input));
      const out = new ZipWriter();
      const outputKey = `outputs/${uuid}.zip`;
      // The zip streams into the blob store while the strategy adds its entries.
      const stored = this.o.blobs.put(outputKey, out.stream);
      stored.catch(() => undefined);
      const cleanup: (() => void)[] = [];
      try {
        await STRATEGIES[p.kind as ProcessKind](this.o, { process: p, input, log, signal: ctrl.signal, attempt: p.attempts, cleanup }, out);
        out.end();
        await stored;
      } catch (err) {
        out.stream.destroy();
        await stored.catch(() => undefined);
        await this.o.blobs.delete(outputKey).catch(() => undefined);
        throw err;
      } finally {
        for (const c of cleanup) c();
      }
      log.line('Process finished: output ready');
      await log.flush();
      await processes.transition(uuid, ['processing'], 'processed', { outputKey, finishedAt: new Date(), reason: null });
      await this.o.blobs.delete(p.inputKey).catch(() => undefined);
    } catch (err) {
      const why = ctrl.signal.aborted ? ctrl.signal.reason : null;
      if (why === 'shutdown') {
        log.line('--- This worker is shutting down; the process goes back to the queue ---');
        await log.flush();
        throw new Error('worker shutting down mid-process');
      }
      let reason: string;
      if (why === 'timeout') reason = `The process exceeded the time limit of ${Math.round(this.o.timeoutMs / 1000)} s`;
      else if (err instanceof ProcessFailure || (err as { statusCode?: number }).statusCode === 400) reason = (err as Error).message;
      else {
        this.o.log.error({ err, uuid }, 'process failed in the service');
        reason = `Internal error: ${(err as Error).message}`;
      }
      log.line(reason);
      await log.flush();
      await processes.transition(uuid, ['processing'], 'failed', { reason, finishedAt: new Date() });
      await this.o.blobs.delete(p.inputKey).catch(() => undefined);
    } finally {
      clearTimeout(timer);
      this.running.delete(uuid);
      await rm(work, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}
