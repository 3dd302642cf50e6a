import { randomUUID } from 'node:crypto';
import { consumeWorkQueue, json, type NatsConnection, type Subjects } from '@dockyard/kit';
import type { ExecutionJobKill, ExecutionPipelineRun } from '@dockyard/contracts';
import type { FastifyBaseLogger } from 'fastify';
import type { Job, Pipeline, PrismaClient } from '../generated/prisma/client.js';
import type { ExecutionEvents } from '../domain/events.js';
import { LogWriter } from '../domain/logs.js';
import { ContainerRunner, WorkerStopping, type Outcome } from '../domain/runner.js';
import { transition } from '../domain/transitions.js';
import { removeCgroup } from '../domain/usage.js';
import type { JobState } from '../domain/views.js';

export const RUN_SUBJECT = 'execution.pipeline.run';
export const KILL_SUBJECT = 'execution.job.kill';
export const GONE = 'The container of this job is gone (its worker stopped while the job ran)';

/**
 * Thrown when this worker finds another holds the pipeline's lease (this one did not renew it in
 * time: a stalled event loop, PostgreSQL away). It stops at once, leaving running containers to the
 * holder, which reattaches; the message is not acknowledged, so it comes back until the holder ends.
 */
export class LeaseLost extends Error {
  constructor(pipelineId: number) {
    super(`pipeline ${pipelineId} is now run by another worker (this one's lease ran out)`);
  }
}

/** Longer than any submission transaction (30 s): a message older than this whose run the pipeline never reached was rolled back. */
const UNCOMMITTED_MS = 60_000;

/** A run message whose submission has not committed yet; retried shortly. */
class NotCommittedYet extends Error {
  constructor(pipelineId: number, run: number) {
    super(`pipeline ${pipelineId} run ${run} is not committed yet`);
  }
}

/** One handling of a pipeline's run message: the lease it holds and what aborts it. */
interface Turn {
  run: number;
  /** The lease holder: one per handling, so two deliveries of one message in one process are two holders. */
  holder: string;
  signal: AbortSignal;
}

export interface WorkerOptions {
  concurrency: number;
  ackWaitMs: number;
  engineId: string;
}

/**
 * Runs submitted pipelines from the JetStream work queue: one message per submission, so a
 * pipeline's jobs run one after another in order while different pipelines run side by side (up
 * to `concurrency`). A message is acknowledged only after every job's outcome is stored; a worker
 * stopped mid-job leaves it to be redelivered, and the next worker reattaches to the container.
 */
export class ExecutionWorker {
  private readonly abort = new AbortController();
  /** This worker process; each handling of a message holds leases as `<id>/<uuid>`. */
  private readonly id = randomUUID();
  private stopConsuming: (() => Promise<void>) | null = null;
  /**
   * How long a pipeline lease lasts unrenewed: three renewals (one per third of the ack wait) may
   * be missed (a loaded machine, PostgreSQL restarting) before another worker takes the pipeline.
   */
  private get leaseMs(): number {
    return 3 * this.opts.ackWaitMs;
  }
  private killSub: ReturnType<NatsConnection['subscribe']> | null = null;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly events: ExecutionEvents,
    private readonly runner: ContainerRunner,
    private readonly log: FastifyBaseLogger,
    private readonly opts: WorkerOptions,
  ) {}

  async start(): Promise<void> {
    this.killSub = this.nc.subscribe(this.subjects.of(KILL_SUBJECT));
    void (async () => {
      for await (const m of this.killSub!) {
        const { jobId, by } = json.decode<ExecutionJobKill>(m.data);
        const killed = await this.runner.kill(jobId, by);
        if (m.reply) m.respond(json.encode({ killed }));
      }
    })();
    await this.sweep();
    this.stopConsuming = await consumeWorkQueue<ExecutionPipelineRun>({
      nc: this.nc,
      stream: this.subjects.stream('EXECUTION'),
      subject: this.subjects.of(RUN_SUBJECT),
      durable: 'runners',
      handle: (run, msg) => this.runPipeline(run, Number(msg.info.timestampNanos / 1_000_000)),
      log: this.log,
      ackWaitMs: this.opts.ackWaitMs,
      concurrency: this.opts.concurrency,
      maxDeliver: 1000,
    });
  }

  /** Stops taking work; running containers are left running for the next worker to reattach. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.killSub?.unsubscribe();
    await this.stopConsuming?.();
  }

  /**
   * On start: a job recorded as running on this engine whose container is gone ends failed (its
   * worker died and nothing can finish it); containers of jobs that already ended are removed.
   *
   * Other workers may share this engine and be running jobs right now, so only what is provably
   * abandoned is touched: a job whose pipeline lease is free or expired (its worker stopped or has
   * not renewed it), read BEFORE the engine's containers are listed (a container started after the
   * list cannot belong to a job that was already running when the jobs were read). A container is
   * removed only when its job is gone or ended, or when it is not the job's recorded container and
   * no live worker holds the job's pipeline (one just created by a live worker is not recorded yet).
   */
  private async sweep(): Promise<void> {
    const abandoned = await this.prisma.$queryRaw<{ id: number }[]>`
      SELECT j.id FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id
      WHERE j.state = 'running' AND j.engine_id = ${this.opts.engineId}
        AND (p.lease_owner IS NULL OR p.lease_until < now())`;
    const containers = await this.runner.containers();
    const ids = new Set([...containers.values()].map((c) => c.Id));
    for (const { id } of abandoned) {
      const job = await this.prisma.job.findUnique({ where: { id } });
      if (!job || job.state !== 'running' || (job.containerId && ids.has(job.containerId))) continue;
      if (!(await this.unleased(job.pipelineId))) continue;
      await this.finish(job, { state: 'failed', reason: GONE, exitCode: null, usage: { cpu: 0, memory: 0, io: 0 }, resultKey: null });
    }
    for (const [jobId, c] of containers) {
      const job = await this.prisma.job.findUnique({ where: { id: jobId }, select: { state: true, containerId: true, pipelineId: true } });
      const ended = !job || ['done', 'failed', 'killed'].includes(job.state);
      if (ended || (job.containerId !== c.Id && (await this.unleased(job.pipelineId)))) await this.runner.remove(c.Id);
    }
    for (const [jobId, cgroup] of await this.runner.cgroups()) {
      const job = await this.prisma.job.findUnique({ where: { id: jobId }, select: { state: true } });
      if (!job || !['in_queue', 'running'].includes(job.state)) await removeCgroup(cgroup);
    }
  }

  /** No live worker holds the pipeline's lease (none, or not renewed in time). */
  private async unleased(pipelineId: number): Promise<boolean> {
    const [row] = await this.prisma.$queryRaw<{ free: boolean }[]>`
      SELECT (lease_owner IS NULL OR lease_until < now()) AS free FROM pipelines WHERE id = ${pipelineId}`;
    return row?.free ?? true;
  }

  /**
   * Takes (or renews) the lease on a pipeline's submission. JetStream may hand the same message to
   * a second worker while the first still runs it (a prefetched message whose ack wait ran out), so
   * the database decides who runs it; a lease not renewed (its worker died) can be taken over.
   */
  private async lease(pipelineId: number, run: number, holder: string): Promise<boolean> {
    const n = await this.prisma.$executeRaw`
      UPDATE pipelines SET lease_owner = ${holder}, lease_until = now() + ${this.leaseMs}::int * interval '1 millisecond'
      WHERE id = ${pipelineId} AND run = ${run} AND (lease_owner IS NULL OR lease_owner = ${holder} OR lease_until < now())`;
    return n === 1;
  }

  private async runPipeline(run: ExecutionPipelineRun, publishedAt: number): Promise<void> {
    // A message redelivered to this same process while it still runs the first delivery is a second
    // holder too: it waits here until the first ends, instead of running the jobs beside it.
    const holder = `${this.id}/${randomUUID()}`;
    let pipeline;
    for (;;) {
      pipeline = await this.prisma.pipeline.findUnique({ where: { id: run.pipelineId } });
      if (pipeline && pipeline.run < run.run) {
        // Published inside a submission's transaction that has not committed yet: wait for it. One
        // that never commits (rolled back) names a run the pipeline never reaches: dropped.
        if (Date.now() - publishedAt < UNCOMMITTED_MS) throw new NotCommittedYet(run.pipelineId, run.run);
        return;
      }
      // Deleted, submitted again since, or already finished: this message is stale.
      if (!pipeline || pipeline.run !== run.run || pipeline.finishedRun >= run.run) return;
      if (await this.lease(pipeline.id, run.run, holder)) break;
      if (this.abort.signal.aborted) throw new WorkerStopping();
      await new Promise((r) => setTimeout(r, 1000));
    }
    // Losing the lease aborts this run as a stopping worker would (containers keep running).
    const lost = new AbortController();
    const renew = setInterval(() => {
      this.lease(run.pipelineId, run.run, holder).then(
        (held) => held || lost.abort(new LeaseLost(run.pipelineId)),
        () => undefined, // PostgreSQL away: try again next time; the lease may run out meanwhile.
      );
    }, Math.max(500, this.opts.ackWaitMs / 3));
    try {
      await this.runJobs(pipeline, run, { run: run.run, holder, signal: AbortSignal.any([this.abort.signal, lost.signal]) });
    } catch (err) {
      if (lost.signal.aborted) throw lost.signal.reason;
      throw err;
    } finally {
      clearInterval(renew);
      await this.prisma.pipeline.updateMany({ where: { id: run.pipelineId, leaseOwner: holder }, data: { leaseOwner: null, leaseUntil: null } });
    }
  }

  private async runJobs(pipeline: Pipeline, run: ExecutionPipelineRun, turn: Turn): Promise<void> {
    const ids = await this.prisma.job.findMany({ where: { pipelineId: pipeline.id }, orderBy: { position: 'asc' }, select: { id: true } });
    let blocker: Job | null = null;
    const states: Record<string, JobState> = {};
    // Containers are removed while the next job starts; all are gone before the pipeline is announced finished.
    const removals: Promise<void>[] = [];
    for (const { id } of ids) {
      if (turn.signal.aborted) throw new WorkerStopping();
      let job = await this.prisma.job.findUnique({ where: { id } });
      if (!job || job.state === 'ready') continue; // added after the submission: not part of this run
      if (blocker && job.state === 'in_queue') {
        const what = blocker.state === 'killed' ? 'was killed' : 'failed';
        job = (await transition(this.prisma, this.events, job, ['in_queue'], 'failed', {
          reason: `Job ${blocker.id} earlier in the pipeline ${what}${blocker.reason ? ` (${blocker.reason})` : ''}`,
          finishedAt: new Date(),
        })) ?? job;
      } else if (job.state === 'in_queue' || job.state === 'running') {
        job = await this.runJob(job, turn, removals);
      }
      const fresh = await this.prisma.job.findUniqueOrThrow({ where: { id } });
      states[String(id)] = fresh.state as JobState;
      if (!blocker && (fresh.state === 'failed' || fresh.state === 'killed')) blocker = fresh;
    }
    await Promise.allSettled(removals);
    // The run is marked finished and announced in one transaction: announced once, never lost.
    await this.prisma.$transaction(async (tx) => {
      await tx.pipeline.updateMany({ where: { id: pipeline.id, run: run.run }, data: { finishedRun: run.run } });
      if (Object.keys(states).length) {
        await this.events.pipelineFinished({ actor: run.actor, ownerId: pipeline.ownerId, pipelineId: pipeline.id, result: blocker ? 'failed' : 'done', jobs: states }, tx);
      }
    });
    await this.events.flush();
  }

  /** Runs (or reattaches to) one job, with its retries, and stores the outcome. */
  private async runJob(job: Job, turn: Turn, removals: Promise<void>[]): Promise<Job> {
    const { signal } = turn;
    let outcome: Outcome;
    // Started by a worker that stopped before recording it (state still in_queue): follow that run
    // instead of removing the container and running the command a second time.
    if (job.state === 'in_queue' && job.containerId && (await this.runner.wasStarted(job.containerId))) {
      job = (await transition(this.prisma, this.events, job, ['in_queue'], 'running', { startedAt: new Date(), reason: null })) ?? job;
    }
    if (job.state === 'running') {
      outcome = (await this.runner.reattach(job, signal)) ?? { state: 'failed', reason: GONE, exitCode: null, usage: { cpu: 0, memory: 0, io: 0 }, resultKey: null };
    } else {
      let attempt = 0;
      for (;;) {
        let current = job;
        outcome = await this.runner.run(current, signal, {
          // One round trip: the container, and how many lines came before it (skipped on reattach).
          // Only the lease holder records a container: a worker that lost the lease a moment ago
          // and has not noticed yet must not start a job the holder is starting too.
          created: async (containerId) => {
            const [row] = await this.prisma.$queryRaw<{ kill_requested: string | null }[]>`
              UPDATE jobs SET container_id = ${containerId}, engine_id = ${this.opts.engineId},
                log_base = (SELECT count(*)::int FROM job_logs WHERE job_id = ${job.id})
              WHERE id = ${job.id}
                AND EXISTS (SELECT 1 FROM pipelines p WHERE p.id = ${job.pipelineId} AND p.lease_owner = ${turn.holder})
              RETURNING kill_requested`;
            if (!row) {
              await this.runner.remove(containerId);
              throw new LeaseLost(job.pipelineId);
            }
            return { killRequested: row.kill_requested };
          },
          started: async () => {
            const now = await this.prisma.job.findUniqueOrThrow({ where: { id: job.id }, select: { state: true } });
            if (now.state === 'running') return true; // a retry
            const moved = await transition(this.prisma, this.events, job, ['in_queue'], 'running', { startedAt: new Date(), reason: null });
            if (moved) current = moved;
            return moved !== null;
          },
        });
        if (outcome.state !== 'failed' || attempt >= job.retries) break;
        attempt++;
        const fresh = await this.prisma.job.findUniqueOrThrow({ where: { id: job.id } });
        if (fresh.killRequested || fresh.state !== 'running') break;
        const note = new LogWriter(this.prisma, this.nc, this.subjects, job.id);
        note.write(`[dockyard] attempt ${attempt} failed: ${outcome.reason}; retrying (${job.retries - attempt + 1} left)`);
        await note.flush();
        if (fresh.containerId) await this.runner.remove(fresh.containerId);
        job = { ...fresh, containerId: null };
      }
    }
    // Stored only while this worker still holds the pipeline (renewed here, not just on the timer).
    if (!(await this.lease(job.pipelineId, turn.run, turn.holder))) throw new LeaseLost(job.pipelineId);
    return this.finish(job, outcome, removals);
  }

  /** Stores a job's outcome, tells followers its log ended, then removes its container. */
  private async finish(job: Job, outcome: Outcome, removals?: Promise<void>[]): Promise<Job> {
    const fresh = await this.prisma.job.findUniqueOrThrow({ where: { id: job.id } });
    const stored = await transition(
      this.prisma,
      this.events,
      fresh,
      ['in_queue', 'running'],
      outcome.state,
      {
        reason: outcome.reason,
        exitCode: outcome.exitCode,
        usedCpu: outcome.usage.cpu,
        usedMemory: BigInt(Math.round(outcome.usage.memory)),
        usedIo: BigInt(Math.round(outcome.usage.io)),
        resultKey: outcome.resultKey,
        finishedAt: new Date(),
      },
      outcome.state === 'killed' ? fresh.killRequested : null,
    );
    const final = stored ?? fresh;
    new LogWriter(this.prisma, this.nc, this.subjects, job.id).end(final.state);
    if (final.containerId) {
      const removed = this.runner.remove(final.containerId);
      if (removals) removals.push(removed);
      else await removed;
    }
    return final;
  }
}
