import type { FastifyPluginAsync } from 'fastify';
import { badRequest, conflict, notFound, routeSchema } from '@dockyard/kit';
import type { Job } from '../generated/prisma/client.js';
import { assertOwner, requireUser } from '../domain/access.js';
import { EMPTY_RESULT } from '../domain/archives.js';
import { pipelineName, readForm } from '../domain/fields.js';
import { ACTIVE_STATES, pipelineView, type JobState } from '../domain/views.js';
import type { RouteDeps } from './deps.js';

const ORDER = [{ position: 'asc' as const }, { id: 'asc' as const }];

/** Deletes the blobs a job keeps (attachments and result). */
export async function deleteJobBlobs(deps: RouteDeps, jobs: Pick<Job, 'attachments' | 'resultKey'>[]): Promise<void> {
  const keys = jobs.flatMap((j) => [...(j.attachments as { key: string }[]).map((a) => a.key), ...(j.resultKey && j.resultKey !== EMPTY_RESULT ? [j.resultKey] : [])]);
  await Promise.allSettled(keys.map((k) => deps.blobs.delete(k)));
}

function ids(list: string): number[] {
  return list.split(',').map((s) => Number(s.trim()));
}

/** Kabuto's pipelines: create, list, show, rename / remove / rearrange jobs, delete, submit. */
export const pipelineRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const { doc, prisma } = deps;

  async function ownedPipeline(request: { identity: Parameters<typeof assertOwner>[0] }, id: number) {
    const p = await prisma.pipeline.findUnique({ where: { id } });
    if (!p) throw notFound('Pipeline not found');
    assertOwner(request.identity, p.ownerId, 'Pipeline');
    return p;
  }

  app.route({
    ...routeSchema(doc, 'listPipelines'),
    handler: async (request) => {
      const user = requireUser(request.identity);
      const pipelines = await prisma.pipeline.findMany({
        where: { ownerId: user.id },
        orderBy: { id: 'asc' },
        include: { jobs: { select: { id: true }, orderBy: ORDER } },
      });
      return Object.fromEntries(pipelines.map((p) => [String(p.id), pipelineView(p, p.jobs)]));
    },
  });

  app.route({
    ...routeSchema(doc, 'createPipeline'),
    handler: async (request) => {
      const user = requireUser(request.identity);
      const name = pipelineName(await readForm(request), true)!;
      const p = await prisma.pipeline.create({ data: { name, ownerId: user.id, ownerLogin: user.login } });
      return { id: p.id };
    },
  });

  app.route({
    ...routeSchema(doc, 'getPipeline'),
    handler: async (request) => {
      const { pipeline_id } = request.params as { pipeline_id: number };
      const p = await ownedPipeline(request, pipeline_id);
      const jobs = await prisma.job.findMany({ where: { pipelineId: p.id }, orderBy: ORDER, select: { id: true } });
      return { [String(p.id)]: pipelineView(p, jobs) };
    },
  });

  app.route({
    ...routeSchema(doc, 'updatePipeline'),
    handler: async (request) => {
      const { pipeline_id } = request.params as { pipeline_id: number };
      const p = await ownedPipeline(request, pipeline_id);
      const form = await readForm(request);
      const name = pipelineName(form, false);
      const remove = typeof form.remove_jobs === 'string' && form.remove_jobs ? form.remove_jobs : undefined;
      const rearrange = typeof form.rearrange_jobs === 'string' && form.rearrange_jobs ? form.rearrange_jobs : undefined;
      for (const [field, v] of [['remove_jobs', remove], ['rearrange_jobs', rearrange]] as const) {
        if (v !== undefined && !/^\s*[0-9]+\s*(,\s*[0-9]+\s*)*$/.test(v)) throw badRequest(`${field} must be comma-separated job ids`);
      }
      if (name === undefined && !remove && !rearrange) throw badRequest('Give at least one of name, remove_jobs, rearrange_jobs');
      const result: Record<string, string> = {};
      const removed: Job[] = [];
      await prisma.$transaction(async (tx) => {
        await tx.$executeRaw`SELECT 1 FROM pipelines WHERE id = ${p.id} FOR UPDATE`;
        let jobs = await tx.job.findMany({ where: { pipelineId: p.id }, orderBy: ORDER });
        if (name !== undefined) {
          await tx.pipeline.update({ where: { id: p.id }, data: { name } });
          result.name = 'Successfully updated name';
        }
        if (remove) {
          const wanted = [...new Set(ids(remove))];
          for (const id of wanted) {
            const job = jobs.find((j) => j.id === id);
            if (!job) throw badRequest(`Job ${id} is not in pipeline ${p.id}`);
            if (ACTIVE_STATES.includes(job.state as JobState)) throw conflict(`Job ${id} is ${job.state}; kill it first`);
          }
          removed.push(...jobs.filter((j) => wanted.includes(j.id)));
          await tx.job.deleteMany({ where: { id: { in: wanted } } });
          jobs = jobs.filter((j) => !wanted.includes(j.id));
          result.remove_jobs = 'Successfully removed jobs';
        }
        if (rearrange) {
          const order = ids(rearrange);
          const current = jobs.map((j) => j.id);
          const same = order.length === current.length && new Set(order).size === order.length && order.every((id) => current.includes(id));
          if (!same) {
            throw badRequest(`Could not rearrange jobs. rearrange ids are [${order.join(', ')}] while current ids are [${current.join(', ')}]`);
          }
          for (const [position, id] of order.entries()) await tx.job.update({ where: { id }, data: { position } });
          result.rearrange_jobs = 'Successfully rearranged jobs';
        }
      });
      await deleteJobBlobs(deps, removed);
      return result;
    },
  });

  app.route({
    ...routeSchema(doc, 'deletePipeline'),
    handler: async (request) => {
      const { pipeline_id } = request.params as { pipeline_id: number };
      const p = await ownedPipeline(request, pipeline_id);
      const jobs = await prisma.$transaction(async (tx) => {
        await tx.$executeRaw`SELECT 1 FROM pipelines WHERE id = ${p.id} FOR UPDATE`;
        const jobs = await tx.job.findMany({ where: { pipelineId: p.id } });
        const busy = jobs.find((j) => ACTIVE_STATES.includes(j.state as JobState));
        if (busy) throw conflict(`Pipeline ${p.id} has a ${busy.state === 'running' ? 'running' : 'queued'} job (${busy.id}); kill it or wait`);
        await tx.pipeline.delete({ where: { id: p.id } });
        return jobs;
      });
      await deleteJobBlobs(deps, jobs);
      return { status: 'Successfully deleted the pipeline' };
    },
  });

  app.route({
    ...routeSchema(doc, 'submitPipeline'),
    handler: async (request) => {
      const { pipeline_id } = request.params as { pipeline_id: number };
      const p = await ownedPipeline(request, pipeline_id);
      const actor = request.identity.login!;
      const { run, jobs } = await prisma.$transaction(async (tx) => {
        await tx.$executeRaw`SELECT 1 FROM pipelines WHERE id = ${p.id} FOR UPDATE`;
        const jobs = await tx.job.findMany({ where: { pipelineId: p.id }, orderBy: ORDER });
        const busy = jobs.find((j) => ACTIVE_STATES.includes(j.state as JobState));
        if (busy) throw conflict(`Pipeline ${p.id} is already running (job ${busy.id} is ${busy.state})`);
        const { run } = await tx.pipeline.update({ where: { id: p.id }, data: { run: { increment: 1 } } });
        const jobIds = jobs.map((j) => j.id);
        // A new run starts clean: the previous run's lines, results and measurements go.
        await tx.jobLog.deleteMany({ where: { jobId: { in: jobIds } } });
        await tx.job.updateMany({
          where: { id: { in: jobIds } },
          data: {
            state: 'in_queue',
            reason: null,
            exitCode: null,
            usedCpu: 0,
            usedMemory: 0n,
            usedIo: 0n,
            resultKey: null,
            containerId: null,
            engineId: null,
            killRequested: null,
            logBase: 0,
            startedAt: null,
            finishedAt: null,
          },
        });
        // Published before the commit: a process that dies after committing but before publishing
        // would leave the pipeline in_queue with no message to run it. A message whose transaction
        // then fails to commit is dropped by the worker (it names a run the pipeline never reached).
        if (jobs.length) await deps.enqueue(p.id, run, actor);
        for (const j of jobs) {
          await deps.events.jobState({ actor, ownerId: j.ownerId, jobId: j.id, pipelineId: p.id, state: 'in_queue', previousState: j.state as JobState, reason: null, exitCode: null }, tx);
        }
        return { run, jobs };
      }, { timeout: 30_000 });
      await deps.events.flush();
      await Promise.allSettled(jobs.filter((j) => j.resultKey && j.resultKey !== EMPTY_RESULT).map((j) => deps.blobs.delete(j.resultKey!)));
      return Object.fromEntries(jobs.map((j) => [String(j.id), 'in_queue']));
    },
  });
};
