import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { HttpError, notFound } from '@dockyard/kit';
import type { ArtifactCache } from '../domain/cache.js';
import type { RequestRow, Requests, RequestViews } from '../domain/requests.js';
import type { BundleFile } from '../domain/types.js';
import { escapeModule } from '../pm/gomod.js';

interface Deps {
  requests: Requests;
  views: RequestViews;
  cache: ArtifactCache;
}

const html = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');

/**
 * Each complete request's dependencies as read-only package indexes of its own, served from the
 * shared cache: an npm registry view, a PyPI simple index and a GOPROXY (what Cachito did with a
 * Nexus repository per request). Same visibility as the request.
 */
export const viewRoutes: FastifyPluginAsync<Deps> = async (app, { requests, views, cache }) => {
  const load = async (request: FastifyRequest): Promise<{ row: RequestRow; files: BundleFile[]; base: string }> => {
    const row = await requests.get(request.identity, Number((request.params as { id: string }).id));
    if (row.state === 'stale') throw new HttpError(410, `The package index of the Cachito request ${row.id} no longer exists`);
    if (row.state !== 'complete') throw notFound();
    return { row, files: row.files as unknown as BundleFile[], base: views.url(`/api/v1/requests/${row.id}/packages`) };
  };
  const idParam = { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] };

  // npm registry views (npm and yarn dependencies alike): packuments and tarballs.
  for (const pm of ['npm', 'yarn']) {
    app.get(`/api/v1/requests/:id/packages/${pm}/*`, { schema: { params: { ...idParam, properties: { ...idParam.properties, '*': { type: 'string' } } } } }, async (request, reply) => {
      const { files, base } = await load(request);
      const rest = decodeURIComponent((request.params as { '*': string })['*']);
      if (rest.includes('/-/')) {
        const file = files.find((f) => f.pm === pm && f.path === `deps/${pm}/${rest}`);
        if (!file) throw notFound();
        return reply.type('application/octet-stream').send(cache.open(file.sha256));
      }
      const versions = files.filter((f) => f.pm === pm && f.name === rest);
      if (!versions.length) throw notFound();
      return {
        name: rest,
        'dist-tags': { latest: versions[versions.length - 1].version },
        versions: Object.fromEntries(
          versions.map((f) => [f.version, { name: rest, version: f.version, dist: { tarball: `${base}/${pm}/${f.path.slice(`deps/${pm}/`.length)}`, integrity: f.integrity } }]),
        ),
      };
    });
  }

  app.get('/api/v1/requests/:id/packages/pypi/simple/:project', { schema: { params: { ...idParam, properties: { ...idParam.properties, project: { type: 'string' } } } } }, async (request, reply) => {
    const { files, base } = await load(request);
    const project = (request.params as { project: string }).project.toLowerCase();
    const mine = files.filter((f) => f.pm === 'pip' && f.name === project);
    if (!mine.length) throw notFound();
    const links = mine.map((f) => `<a href="${html(`${base}/pypi/files/${f.integrity}#sha256=${f.sha256}`)}">${html(f.integrity ?? '')}</a><br/>`);
    return reply.type('text/html').send(`<!DOCTYPE html>\n<html><body>\n${links.join('\n')}\n</body></html>\n`);
  });

  app.get('/api/v1/requests/:id/packages/pypi/files/:file', { schema: { params: { ...idParam, properties: { ...idParam.properties, file: { type: 'string' } } } } }, async (request, reply) => {
    const { files } = await load(request);
    const file = files.find((f) => f.pm === 'pip' && f.path === `deps/pip/${(request.params as { file: string }).file}`);
    if (!file) throw notFound();
    return reply.type('application/octet-stream').send(cache.open(file.sha256));
  });

  app.get('/api/v1/requests/:id/packages/goproxy/*', { schema: { params: { ...idParam, properties: { ...idParam.properties, '*': { type: 'string' } } } } }, async (request, reply) => {
    const { files } = await load(request);
    const rest = (request.params as { '*': string })['*'];
    const m = /^(.+)\/@v\/(list|(.+)\.(info|mod|zip))$/.exec(rest);
    if (!m) throw notFound();
    const gomod = files.filter((f) => f.pm === 'gomod' && escapeModule(f.name) === m[1]);
    if (!gomod.length) throw notFound();
    if (m[2] === 'list') return reply.type('text/plain').send(`${[...new Set(gomod.map((f) => f.version))].sort().join('\n')}\n`);
    const version = gomod.find((f) => escapeModule(f.version) === m[3])?.version;
    if (!version) throw notFound();
    if (m[4] === 'info') return { Version: version };
    const file = gomod.find((f) => f.version === version && f.path.endsWith(`.${m[4]}`));
    if (!file) throw notFound();
    return reply.type(m[4] === 'zip' ? 'application/zip' : 'text/plain').send(cache.open(file.sha256));
  });
};
