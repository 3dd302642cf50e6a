import type { Job, PrismaClient, Prisma } from '../generated/prisma/client.js';
import type { ExecutionEvents } from './events.js';
import type { JobState } from './views.js';

/**
 * Moves a job from one of `from` to `to` (with `data`) in one conditional UPDATE, so two writers
 * (a kill and the worker) never both win, then announces the transition. Returns the job as
 * stored, or null when it was no longer in one of `from`. The event commits with the state.
 */
export async function transition(
  prisma: PrismaClient,
  events: ExecutionEvents,
  job: Pick<Job, 'id' | 'pipelineId'>,
  from: JobState[],
  to: JobState,
  data: Prisma.JobUpdateManyMutationInput = {},
  actor: string | null = null,
): Promise<Job | null> {
  const before = await prisma.job.findUnique({ where: { id: job.id }, select: { state: true } });
  if (!before || !from.includes(before.state as JobState)) return null;
  // The new state and its event commit together (the event is published after: events.flush).
  const after = await prisma.$transaction(async (tx) => {
    const [after] = await tx.job.updateManyAndReturn({ where: { id: job.id, state: before.state }, data: { ...data, state: to } });
    if (after && before.state !== to) {
      await events.jobState(
        { actor, ownerId: after.ownerId, jobId: job.id, pipelineId: job.pipelineId, state: to, previousState: before.state as JobState, reason: after.reason, exitCode: after.exitCode },
        tx,
      );
    }
    return after ?? null;
  });
  if (after && before.state !== to) await events.flush();
  return after;
}
