import type { Job, Pipeline } from '../generated/prisma/client.js';

export const JOB_STATES = ['ready', 'in_queue', 'running', 'done', 'failed', 'killed'] as const;
export type JobState = (typeof JOB_STATES)[number];
/** States a job is busy in: it may not be deleted, removed from its pipeline or submitted again. */
export const ACTIVE_STATES: JobState[] = ['in_queue', 'running'];
export const TERMINAL_STATES: JobState[] = ['done', 'failed', 'killed'];

/** Kabuto's `creation_date`: YYYY-MM-DD. */
const day = (d: Date) => d.toISOString().slice(0, 10);

export function pipelineView(p: Pipeline, jobs: { id: number }[]) {
  return { id: p.id, name: p.name, creation_date: day(p.createdAt), jobs: jobs.map((j) => ({ id: j.id })) };
}

/** A Kabuto image id stays a number; an image reference is shown as given. */
export const imageIdView = (imageId: string): number | string => (/^[0-9]+$/.test(imageId) ? Number(imageId) : imageId);

export function jobView(j: Job) {
  return {
    id: j.id,
    command: j.command,
    state: j.state as JobState,
    creation_date: day(j.createdAt),
    used_cpu: j.usedCpu,
    used_memory: Number(j.usedMemory),
    used_io: Number(j.usedIo),
    image: { id: imageIdView(j.imageId) },
    pipeline: { id: j.pipelineId },
    reason: j.reason,
  };
}
