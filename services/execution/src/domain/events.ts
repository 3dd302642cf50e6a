import { randomUUID } from 'node:crypto';
import type { EventOutbox, SqlExecutor } from '@dockyard/kit';
import type { JobState } from './views.js';

/**
 * The execution events (payloads JobState and PipelineFinished in openapi/events.yaml), through the
 * service's outbox: given the transaction that stores the change, an event commits with it and is
 * published after the commit ({@link flush}), so neither a NATS outage nor a process killed right
 * after the commit loses it. Without a transaction it is stored, then published at once.
 */
export class ExecutionEvents {
  constructor(
    private readonly outbox: EventOutbox,
    private readonly db: SqlExecutor,
  ) {}

  private async add(subject: string, payload: Record<string, unknown>, tx?: SqlExecutor): Promise<void> {
    const id = randomUUID();
    await this.outbox.add(tx ?? this.db, subject, { id, occurredAt: new Date().toISOString(), ...payload });
    if (!tx) await this.outbox.flush();
  }

  /** Publishes what committed transactions stored (never throws: what fails waits for the next flush). */
  async flush(): Promise<void> {
    await this.outbox.flush();
  }

  jobState(e: { actor: string | null; ownerId: string; jobId: number; pipelineId: number; state: JobState; previousState: JobState | null; reason: string | null; exitCode: number | null }, tx?: SqlExecutor) {
    return this.add('events.execution.job.state', { resource: `job:${e.jobId}`, ...e }, tx);
  }

  pipelineFinished(e: { actor: string | null; ownerId: string; pipelineId: number; result: 'done' | 'failed'; jobs: Record<string, JobState> }, tx?: SqlExecutor) {
    return this.add('events.execution.pipeline.finished', { resource: `pipeline:${e.pipelineId}`, ...e }, tx);
  }
}
