import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { conflict, notFound, routeSchema, json, type NatsConnection, type Subjects } from '@dockyard/kit';
import type { ExecutionJobKill } from '@dockyard/contracts';
import { assertOwner, requireUser } from '../domain/access.js';
import { EMPTY_RESULT, EMPTY_ZIP } from '../domain/archives.js';
import { jobSpec, readForm } from '../domain/fields.js';
import { transition } from '../domain/transitions.js';
import { AttachmentUpload } from '../domain/uploads.js';
import { jobView, TERMINAL_STATES, type JobState } from '../domain/views.js';
import { KILL_SUBJECT } from '../worker/worker.js';
import { deleteJobBlobs } from './pipelines.js';
import type { RouteDeps } from './deps.js';

type JobParams = { pipeline_id: number; job_id: number };

/** Kabuto's jobs: create (with attachments), show, download results, delete, kill. */
export const jobRoutes: FastifyPluginAsync<RouteDeps & { nc: NatsConnection; subjects: Subjects }> = async (app, deps) => {
  const { doc, prisma, config } = deps;

  async function ownedJob(request: FastifyRequest) {
    const { pipeline_id, job_id } = request.params as JobParams;
    const job = await prisma.job.findUnique({ where: { id: job_id } });
    if (!job || job.pipelineId !== pipeline_id) throw notFound('Job not found');
    assertOwner(request.identity, job.ownerId, 'Job');
    return job;
  }

  app.route({
    ...routeSchema(doc, 'createJob'),
    handler: async (request) => {
      const user = requireUser(request.identity);
      const { pipeline_id } = request.params as { pipeline_id: number };
      const pipeline = await prisma.pipeline.findUnique({ where: { id: pipeline_id } });
      if (!pipeline) throw notFound('Pipeline not found');
      assertOwner(request.identity, pipeline.ownerId, 'Pipeline');
      const upload = new AttachmentUpload(deps.blobs, {
        maxFileBytes: config.DOCKYARD_EXECUTION_MAX_FILE_BYTES,
        maxFiles: config.DOCKYARD_EXECUTION_MAX_FILES,
        maxTotalBytes: config.DOCKYARD_EXECUTION_MAX_UPLOAD_BYTES,
        maxExpandedBytes: config.DOCKYARD_EXECUTION_MAX_EXPANDED_BYTES,
        maxArchiveEntries: config.DOCKYARD_EXECUTION_MAX_ARCHIVE_ENTRIES,
      });
      try {
        const spec = jobSpec(await readForm(request, upload), config);
        const imageRef = await deps.images.resolve(spec.imageId, request.identity);
        const job = await prisma.$transaction(async (tx) => {
          await tx.$executeRaw`SELECT 1 FROM pipelines WHERE id = ${pipeline.id} FOR UPDATE`;
          const last = await tx.job.aggregate({ where: { pipelineId: pipeline.id }, _max: { position: true } });
          return tx.job.create({
            data: {
              pipelineId: pipeline.id,
              position: (last._max.position ?? -1) + 1,
              ownerId: pipeline.ownerId,
              command: spec.command,
              imageId: spec.imageId,
              imageRef,
              timeout: spec.timeout,
              memory: BigInt(spec.memory),
              nanoCpus: BigInt(spec.nanoCpus),
              env: spec.env,
              network: spec.network,
              retries: spec.retries,
              attachments: upload.attachments as never,
            },
          });
        });
        void user;
        return { id: job.id };
      } catch (err) {
        await upload.discard();
        throw err;
      }
    },
  });

  app.route({
    ...routeSchema(doc, 'getJob'),
    handler: async (request, reply) => {
      const job = await ownedJob(request);
      if (!Object.prototype.hasOwnProperty.call(request.query ?? {}, 'result')) return { [String(job.id)]: jobView(job) };
      if (job.state !== 'done' || !job.resultKey) throw conflict('Job has not finished running, or has failed');
      reply.header('content-type', 'application/zip');
      reply.header('content-disposition', `attachment; filename="job-${job.id}-results.zip"`);
      if (job.resultKey === EMPTY_RESULT) return reply.send(EMPTY_ZIP);
      const body = await deps.blobs.get(job.resultKey);
      const info = await deps.blobs.stat(job.resultKey);
      if (info) reply.header('content-length', info.size);
      return reply.send(body);
    },
  });

  app.route({
    ...routeSchema(doc, 'deleteJob'),
    handler: async (request) => {
      const job = await ownedJob(request);
      const { count } = await prisma.job.deleteMany({ where: { id: job.id, state: { notIn: ['in_queue', 'running'] } } });
      if (!count) throw conflict(`Job ${job.id} is ${job.state}; kill it first`);
      await deleteJobBlobs(deps, [job]);
      return { status: 'Successfully deleted the job' };
    },
  });

  const kill = async (request: FastifyRequest) => {
    const job = await ownedJob(request);
    const by = request.identity.login!;
    if (job.state === 'in_queue') {
      const killed = await transition(prisma, deps.events, job, ['in_queue'], 'killed', { reason: `Killed by ${by} before it ran`, killRequested: by, finishedAt: new Date() }, by);
      if (killed) {
        // It may have a container already (created, about to start): the worker stops it.
        deps.nc.publish(deps.subjects.of(KILL_SUBJECT), json.encode({ jobId: job.id, by } satisfies ExecutionJobKill));
        return { [String(job.id)]: jobView(killed) };
      }
    }
    const { count } = await prisma.job.updateMany({ where: { id: job.id, state: { in: ['in_queue', 'running'] } }, data: { killRequested: by } });
    if (!count) {
      const now = await prisma.job.findUniqueOrThrow({ where: { id: job.id } });
      throw conflict(`Job ${job.id} is ${now.state}, not running`);
    }
    deps.nc.publish(deps.subjects.of(KILL_SUBJECT), json.encode({ jobId: job.id, by } satisfies ExecutionJobKill));
    // The worker running it stops the container and records the outcome; wait for it (bounded).
    const deadline = Date.now() + config.DOCKYARD_EXECUTION_KILL_WAIT_MS;
    let now = await prisma.job.findUniqueOrThrow({ where: { id: job.id } });
    while (!TERMINAL_STATES.includes(now.state as JobState) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      now = await prisma.job.findUniqueOrThrow({ where: { id: job.id } });
    }
    return { [String(job.id)]: jobView(now) };
  };
  app.route({ ...routeSchema(doc, 'killJob'), handler: kill });
  app.route({ ...routeSchema(doc, 'killJobViaGet'), handler: kill });
};
