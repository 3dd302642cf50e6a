import { randomUUID } from 'node:crypto';
import type { EventPublisher } from '@dockyard/kit';
import type { FastifyBaseLogger } from 'fastify';
import type { JobState } from './views.js';

export interface EventRetryOptions {
  /**
   * How long a failing publish is retried (with backoff) before the error is thrown. Kept inside
   * the EVENTS stream's 120 s duplicate window, so an attempt that was stored but whose
   * acknowledgement was lost is never stored twice.
   */
  retryForMs: number;
  firstDelayMs: number;
  maxDelayMs: number;
}

const DEFAULTS: EventRetryOptions = { retryForMs: 90_000, firstDelayMs: 200, maxDelayMs: 5_000 };

/** Publishes the execution events (payloads JobState and PipelineFinished in openapi/events.yaml). */
export class ExecutionEvents {
  /** Publish attempts that failed and were retried (for logs and tests). */
  failedAttempts = 0;
  private readonly retry: EventRetryOptions;

  constructor(
    private readonly events: EventPublisher,
    private readonly log?: FastifyBaseLogger,
    retry: Partial<EventRetryOptions> = {},
  ) {
    this.retry = { ...DEFAULTS, ...retry };
  }

  /**
   * Events are published after the state is stored, so a publish that fails (a NATS node down, the
   * stream briefly without a leader or missing) is retried with backoff rather than lost. The
   * event id doubles as the JetStream message id: every attempt carries the same id and payload,
   * so JetStream stores the event once however many attempts reach it.
   */
  private async publish(subject: string, payload: Record<string, unknown>): Promise<void> {
    const id = randomUUID();
    const event = { id, occurredAt: new Date().toISOString(), ...payload };
    const deadline = Date.now() + this.retry.retryForMs;
    let delay = this.retry.firstDelayMs;
    for (;;) {
      try {
        await this.events.publish(subject, event, id);
        return;
      } catch (err) {
        if (Date.now() + delay > deadline) throw err;
        this.failedAttempts++;
        this.log?.warn({ err, subject, eventId: id }, 'event not published yet; retrying');
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, this.retry.maxDelayMs);
      }
    }
  }

  jobState(e: { actor: string | null; ownerId: string; jobId: number; pipelineId: number; state: JobState; previousState: JobState | null; reason: string | null; exitCode: number | null }) {
    return this.publish('events.execution.job.state', { resource: `job:${e.jobId}`, ...e });
  }

  pipelineFinished(e: { actor: string | null; ownerId: string; pipelineId: number; result: 'done' | 'failed'; jobs: Record<string, JobState> }) {
    return this.publish('events.execution.pipeline.finished', { resource: `pipeline:${e.pipelineId}`, ...e });
  }
}
