import { randomUUID } from 'node:crypto';
import type { EventPublisher } from '@dockyard/kit';
import type { JobState } from './views.js';

/** Publishes the execution events (payloads JobState and PipelineFinished in openapi/events.yaml). */
export class ExecutionEvents {
  constructor(private readonly events: EventPublisher) {}

  private async publish(subject: string, payload: Record<string, unknown>): Promise<void> {
    // The event id doubles as the JetStream message id, so a retried publish is stored once.
    const id = randomUUID();
    await this.events.publish(subject, { id, occurredAt: new Date().toISOString(), ...payload }, id);
  }

  jobState(e: { actor: string | null; ownerId: string; jobId: number; pipelineId: number; state: JobState; previousState: JobState | null; reason: string | null; exitCode: number | null }) {
    return this.publish('events.execution.job.state', { resource: `job:${e.jobId}`, ...e });
  }

  pipelineFinished(e: { actor: string | null; ownerId: string; pipelineId: number; result: 'done' | 'failed'; jobs: Record<string, JobState> }) {
    return this.publish('events.execution.pipeline.finished', { resource: `pipeline:${e.pipelineId}`, ...e });
  }
}
