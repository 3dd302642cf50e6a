import type { FastifyPluginAsync } from 'fastify';
import { routeSchema, type OpenApiDocument } from '@dockyard/kit';

export interface StatusCheck {
  name: string;
  check: () => Promise<void>;
}

interface Deps {
  doc: OpenApiDocument;
  services: StatusCheck[];
  /** Workers seen recently (name -> last heartbeat). */
  workers: () => Promise<{ name: string; ok: boolean; reason?: string }[]>;
  /** Which services each package manager needs. */
  needs: Record<string, string[]>;
}

/** /api/v1/status and /status/short: workers, NATS, the database, each upstream; what can be processed. */
export const statusRoutes: FastifyPluginAsync<Deps> = async (app, d) => {
  const status = async () => {
    const services = await Promise.all(
      d.services.map(async (s) => {
        try {
          await s.check();
          return { name: s.name, ok: true };
        } catch (err) {
          return { name: s.name, ok: false, reason: (err as Error).message };
        }
      }),
    );
    const workers = await d.workers();
    const okNames = new Set(services.filter((s) => s.ok).map((s) => s.name));
    const anyWorker = workers.some((w) => w.ok);
    const can_process = Object.fromEntries(Object.entries(d.needs).map(([pm, needs]) => [pm, anyWorker && needs.every((n) => okNames.has(n))]));
    return { can_process, services, workers };
  };

  app.route({ ...routeSchema(d.doc, 'getCachitoStatus'), config: { public: true }, handler: status });
  app.route({
    ...routeSchema(d.doc, 'getCachitoStatusShort'),
    config: { public: true },
    handler: async (_request, reply) => {
      const s = await status();
      const down = s.services.find((x) => !x.ok);
      if (down) return reply.status(503).send({ ok: false, reason: `${down.name} is unavailable: ${down.reason}` });
      if (!s.workers.some((w) => w.ok)) return reply.status(503).send({ ok: false, reason: 'no workers are available' });
      const cannot = Object.entries(s.can_process).filter(([, ok]) => !ok).map(([pm]) => pm);
      if (cannot.length) return reply.status(503).send({ ok: false, reason: `cannot process: ${cannot.join(', ')}` });
      return { ok: true };
    },
  });
};
