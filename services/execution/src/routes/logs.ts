import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { json, notFound, routeSchema, type NatsConnection, type Subjects } from '@dockyard/kit';
import type { JobLogMessage } from '@dockyard/contracts';
import { assertOwner } from '../domain/access.js';
import { readLogs, type LogLineView } from '../domain/logs.js';
import { TERMINAL_STATES, type JobState } from '../domain/views.js';
import type { RouteDeps } from './deps.js';

/** Lines read from the database per query while sending a backlog. */
const PAGE = 5000;

/** Kabuto's job logs (all, or after a line) and Dockyard's live stream of them (SSE). */
export const logRoutes: FastifyPluginAsync<RouteDeps & { nc: NatsConnection; subjects: Subjects }> = async (app, deps) => {
  const { doc, prisma } = deps;

  async function ownedJob(request: FastifyRequest) {
    const { job_id } = request.params as { job_id: number };
    const job = await prisma.job.findUnique({ where: { id: job_id } });
    if (!job) throw notFound('Job not found');
    assertOwner(request.identity, job.ownerId, 'Job');
    return job;
  }

  app.route({
    ...routeSchema(doc, 'getJobLogs'),
    handler: async (request) => readLogs(prisma, (await ownedJob(request)).id),
  });

  app.route({
    ...routeSchema(doc, 'getJobLogsSince'),
    handler: async (request) => {
      const job = await ownedJob(request);
      return readLogs(prisma, job.id, (request.params as { log_id: number }).log_id);
    },
  });

  app.route({
    ...routeSchema(doc, 'streamJobLogs'),
    handler: async (request, reply) => {
      const job = await ownedJob(request);
      const header = request.headers['last-event-id'];
      let last = typeof header === 'string' && /^[0-9]+$/.test(header) ? Number(header) : 0;

      // Subscribe before reading the backlog: a line stored meanwhile arrives live (duplicates are skipped by id).
      const sub = deps.nc.subscribe(deps.subjects.of(`logs.job.${job.id}`));
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': request.id,
        'x-dockyard-service': 'execution',
      });
      let closed = false;
      request.raw.on('close', () => {
        closed = true;
        sub.unsubscribe();
      });
      const write = async (chunk: string) => {
        if (closed) return;
        if (!res.write(chunk)) await new Promise<void>((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
      };
      const send = async (lines: LogLineView[]) => {
        let out = '';
        for (const l of lines) {
          if (l.id <= last) continue;
          last = l.id;
          out += `id: ${l.id}\nevent: log\ndata: ${JSON.stringify(l)}\n\n`;
        }
        if (out) await write(out);
      };
      const backlog = async () => {
        for (;;) {
          const page = await readLogs(prisma, job.id, last, PAGE);
          await send(page);
          if (page.length < PAGE || closed) return;
        }
      };
      const finish = async (state: string) => {
        await backlog();
        await write(`event: end\ndata: ${JSON.stringify({ id: job.id, state })}\n\n`);
        sub.unsubscribe();
        res.end();
      };
      const keepAlive = setInterval(() => void write(': keep-alive\n\n'), 15_000);
      try {
        await backlog();
        const now = await prisma.job.findUnique({ where: { id: job.id }, select: { state: true } });
        // A job not yet submitted (ready) is followed too: its lines come once it runs.
        if (!now || TERMINAL_STATES.includes(now.state as JobState)) {
          await finish(now?.state ?? 'deleted');
          return;
        }
        for await (const m of sub) {
          const msg = json.decode<JobLogMessage>(m.data);
          if ('end' in msg) {
            await finish(msg.state);
            return;
          }
          await send(msg.lines);
        }
      } catch (err) {
        request.log.warn({ err }, 'log stream ended with an error');
        res.end();
      } finally {
        clearInterval(keepAlive);
        sub.unsubscribe();
      }
    },
  });
};
