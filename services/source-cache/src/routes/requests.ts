import { createHash } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { badRequest, HttpError, notFound, routeSchema, type BlobStore, type GitPolicy, type OpenApiDocument } from '@dockyard/kit';
import { contentManifest, requestContentManifest, sbom } from '../domain/manifest.js';
import { Requests, RequestViews, type ListQuery, type PatchBody } from '../domain/requests.js';
import type { ConfigFile, EnvVar } from '../domain/types.js';
import { validateNewRequest, type RequestBody } from '../domain/validate.js';

interface Deps {
  doc: OpenApiDocument;
  requests: Requests;
  views: RequestViews;
  blobs: BlobStore;
  policy: GitPolicy;
  enabled: string[];
  defaults: string[];
  /** Hands a new request to the workers (JetStream work queue). */
  enqueue: (id: number) => Promise<void>;
  resolve?: (host: string) => Promise<string[]>;
}

type Id = { id: number };

/** Cachito API v1: requests and everything a request produced. */
export const requestRoutes: FastifyPluginAsync<Deps> = async (app, d) => {
  const { doc, requests, views } = d;

  // The state filter answers Cachito's own message, not the generic enum one.
  const list = routeSchema(doc, 'listCachitoRequests');
  const qs = structuredClone(list.schema.querystring) as { properties: Record<string, Record<string, unknown>> };
  qs.properties.state = { type: 'string' };
  list.schema.querystring = qs;
  app.route({
    ...list,
    handler: async (request) => {
      const q = request.query as ListQuery & { verbose?: boolean; pkg_manager?: string[] };
      const { rows, total } = await requests.list(request.identity, q);
      const pages = Math.ceil(total / q.per_page);
      if (q.page > 1 && q.page > pages) throw notFound();
      const link = (page: number) => {
        const params = new URLSearchParams({ page: String(page), per_page: String(q.per_page), verbose: q.verbose ? 'True' : 'False' });
        for (const k of ['state', 'repo', 'ref'] as const) if (q[k]) params.set(k, q[k]!);
        for (const pm of q.pkg_manager ?? []) params.append('pkg_manager', pm);
        return views.url(`/api/v1/requests?${params}`);
      };
      return {
        items: rows.map((r) => (q.verbose ? views.verbose(r) : views.short(r))),
        meta: {
          first: link(1),
          last: link(Math.max(pages, 1)),
          next: q.page < pages ? link(q.page + 1) : null,
          previous: q.page > 1 ? link(q.page - 1) : null,
          page: q.page,
          pages,
          per_page: q.per_page,
          total,
        },
      };
    },
  });

  // Cachito's wording for a bad repo/ref, before the schema's generic messages.
  const create = routeSchema(doc, 'createCachitoRequest');
  const body = structuredClone(create.schema.body) as { properties: Record<string, Record<string, unknown>> };
  delete body.properties.ref.pattern;
  delete body.properties.repo.maxLength;
  create.schema.body = body;
  app.route({
    ...create,
    handler: async (request, reply) => {
      const input = await validateNewRequest(request.identity, request.body as RequestBody, { enabled: d.enabled, defaults: d.defaults, policy: d.policy, resolve: d.resolve });
      const row = await requests.create(input);
      await d.enqueue(row.id);
      return reply.status(201).send(views.verbose(row));
    },
  });

  const latest = routeSchema(doc, 'getLatestCachitoRequest');
  latest.schema.querystring = structuredClone(latest.schema.querystring);
  delete (latest.schema.querystring as { properties: Record<string, Record<string, unknown>> }).properties.ref.pattern;
  app.route({
    ...latest,
    handler: async (request) => {
      const { repo, ref } = request.query as { repo: string; ref: string };
      if (!/^[0-9a-f]{40}$/.test(ref)) throw badRequest('The "ref" parameter must be a 40 character hex string');
      return views.verbose(await requests.latest(request.identity, repo, ref));
    },
  });

  app.route({
    ...routeSchema(doc, 'getCachitoRequest'),
    handler: async (request) => views.verbose(await requests.get(request.identity, (request.params as Id).id)),
  });

  app.route({
    ...routeSchema(doc, 'updateCachitoRequest'),
    handler: async (request) => views.verbose(await requests.patch(request.identity, (request.params as Id).id, request.body as PatchBody)),
  });

  app.route({
    ...routeSchema(doc, 'getCachitoRequestConfigurationFiles'),
    handler: async (request) => (await requests.get(request.identity, (request.params as Id).id)).configurationFiles as unknown as ConfigFile[],
  });

  app.route({
    ...routeSchema(doc, 'addCachitoRequestConfigurationFiles'),
    handler: async (request, reply) => {
      await requests.addConfigurationFiles(request.identity, (request.params as Id).id, request.body as ConfigFile[]);
      return reply.status(204).send();
    },
  });

  app.route({
    ...routeSchema(doc, 'getCachitoRequestEnvironmentVariables'),
    handler: async (request) => (await requests.get(request.identity, (request.params as Id).id)).environmentVariables as unknown as Record<string, EnvVar>,
  });

  app.route({
    ...routeSchema(doc, 'getCachitoRequestContentManifest'),
    handler: async (request) => requestContentManifest(await requests.get(request.identity, (request.params as Id).id)),
  });

  app.route({
    ...routeSchema(doc, 'getCachitoContentManifest'),
    handler: async (request) => {
      const ids = [...new Set(((request.query as { requests?: string }).requests ?? '').split(',').filter(Boolean).map(Number))];
      const rows = [];
      for (const id of ids) rows.push(await requests.get(request.identity, id));
      return contentManifest(rows);
    },
  });

  app.route({
    ...routeSchema(doc, 'getCachitoRequestSbom'),
    handler: async (request) => sbom(await requests.get(request.identity, (request.params as Id).id)),
  });

  app.route({
    ...routeSchema(doc, 'getCachitoRequestLogs'),
    handler: async (request, reply) => {
      const row = await requests.get(request.identity, (request.params as Id).id);
      if (row.state === 'stale') throw new HttpError(410, `The logs for the Cachito request ${row.id} no longer exist`);
      return reply.type('text/plain; charset=utf-8').send(row.logs);
    },
  });

  app.route({
    ...routeSchema(doc, 'downloadCachitoRequestBundle'),
    handler: async (request, reply) => {
      const row = await requests.get(request.identity, (request.params as Id).id);
      if (row.state !== 'complete' || !row.bundleKey || !row.bundleSha256) {
        throw badRequest('The request must be in the "complete" state before downloading the archive');
      }
      // Verified before a byte is sent: a bundle that no longer matches its checksum is never served.
      const hash = createHash('sha256');
      for await (const chunk of await d.blobs.get(row.bundleKey)) hash.update(chunk as Buffer);
      if (hash.digest('hex') !== row.bundleSha256) {
        request.log.error({ requestId: row.id }, 'bundle checksum mismatch');
        throw new HttpError(500, `The bundle for request ${row.id} failed its checksum verification`);
      }
      return reply
        .header('Digest', `sha-256=${Buffer.from(row.bundleSha256, 'hex').toString('base64')}`)
        .header('Content-Disposition', `attachment; filename=cachito-${row.id}.tar.gz`)
        .header('Content-Length', String(row.bundleSize))
        .type('application/gzip')
        .send(await d.blobs.get(row.bundleKey));
    },
  });
};
