import { randomUUID } from 'node:crypto';
import type { EventPublisher, PublishRetry } from '@dockyard/kit';
import type { FastifyBaseLogger } from 'fastify';
import type { JobState } from './views.js';

/** Publishes the execution events (payloads JobState and PipelineFinished in openapi/events.yaml). */
export class ExecutionEvents {
  /** Publish attempts that failed and were retried (for logs and tests). */
  failedAttempts = 0;

  constructor(
    private readonly events: EventPublisher,
    private readonly log?: FastifyBaseLogger,
    /** kit's defaults (90 s) unless a test shortens them. */
    private readonly retry: Partial<PublishRetry> = {},
  ) {}

  /** Events are published after the state is stored: kit retries a failed publish rather than lose it. */
  private async publish(subject: string, payload: Record<string, unknown>): Promise<void> {
    const id = randomUUID();
    const event = { id, occurredAt: new Date().toISOString(), ...payload };
    await this.events.publishRetrying(subject, event, id, {
      ...this.retry,
      onRetry: (err) => {
        this.failedAttempts++;
        this.log?.warn({ err, subject, eventId: id }, 'event not published yet; retrying');
      },
    });
  }

  jobState(e: { actor: string | null; ownerId: string; jobId: number; pipelineId: number; state: JobState; previousState: JobState | null; reason: string | null; exitCode: number | null }) {
    return this.publish('events.execution.job.state', { resource: `job:${e.jobId}`, ...e });
  }

  pipelineFinished(e: { actor: string | null; ownerId: string; pipelineId: number; result: 'done' | 'failed'; jobs: Record<string, JobState> }) {
    return this.publish('events.execution.pipeline.finished', { resource: `pipeline:${e.pipelineId}`, ...e });
  }
}
