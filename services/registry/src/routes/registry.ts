import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { badRequest, routeSchema, type OpenApiDocument } from '@dockyard/kit';
import { MAX_DOCUMENT_BYTES, NAME_RULE, validName } from '../domain/document.js';
import type { AppKey, ListQuery, Registry } from '../domain/registry.js';

interface Deps {
  doc: OpenApiDocument;
  registry: Registry;
  blobs: import('@dockyard/kit').BlobStore;
}

/**
 * The route of an operation without its body schema: ECR clients send JSON or YAML documents under
 * any content type (curl -d sends them as forms), so bodies arrive as text and the domain parses
 * and checks them itself, naming the field.
 */
function rawBodyRoute(doc: OpenApiDocument, operationId: string) {
  const route = routeSchema(doc, operationId);
  const { body: _body, ...schema } = route.schema as Record<string, unknown>;
  return { ...route, schema };
}

const META_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

const appKey = (request: FastifyRequest): AppKey => {
  const { namespace, repository, version } = request.params as { namespace: string; repository: string; version: string };
  return { namespace, name: repository, version };
};

/** ECR's apps, namespaces and repositories endpoints. */
export const registryRoutes: FastifyPluginAsync<Deps> = async (app, { doc, registry, blobs }) => {
  // Every body is text (JSON or YAML), whatever its content type says, at most 32 KiB.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_DOCUMENT_BYTES }, (_request, body, done) => done(null, body));

  // Over the limit: ECR's wording for app documents; everything else goes to the kit's handler.
  app.setErrorHandler((err: Error & { code?: string }, request, reply) => {
    if (err.code !== 'FST_ERR_CTP_BODY_TOO_LARGE') throw err;
    const what = request.method === 'POST' ? 'App document' : 'Request body';
    return reply.status(413).send({ error: `${what} larger than ${MAX_DOCUMENT_BYTES} bytes` });
  });

  // Names in paths follow the same rule as everywhere (the OpenAPI pattern is looser: '.', '..').
  app.addHook('preValidation', async (request) => {
    const params = request.params as Record<string, string> | undefined;
    for (const [param, field] of [['namespace', 'namespace'], ['repository', 'name']] as const) {
      if (params?.[param] !== undefined && !validName(params[param])) throw badRequest(NAME_RULE(field));
    }
  });

  const json = (text: string) => text; // bodies are stored as rendered JSON text: sent as they are

  // ------------------------------------------------------------------ apps
  app.route({
    ...rawBodyRoute(doc, 'createApp'),
    bodyLimit: MAX_DOCUMENT_BYTES,
    handler: async (request, reply) => {
      const { force } = request.query as { force?: boolean };
      const body = await registry.submit(request.identity, request.body as string | undefined, appKey(request), force === true);
      return reply.type('application/json; charset=utf-8').send(json(body));
    },
  });

  app.route({
    ...rawBodyRoute(doc, 'submitApp'),
    bodyLimit: MAX_DOCUMENT_BYTES,
    handler: async (request, reply) => {
      const { force } = request.query as { force?: boolean };
      const body = await registry.submit(request.identity, request.body as string | undefined, null, force === true);
      return reply.type('application/json; charset=utf-8').send(json(body));
    },
  });

  app.route({
    ...routeSchema(doc, 'getApp'),
    handler: async (request, reply) => reply.type('application/json; charset=utf-8').send(await registry.appBody(request.identity, appKey(request))),
  });

  app.route({
    ...routeSchema(doc, 'freezeApp'),
    handler: async (request, reply) => {
      const { frozen } = request.query as { frozen: boolean };
      return reply.type('application/json; charset=utf-8').send(await registry.freeze(request.identity, appKey(request), frozen));
    },
  });

  app.route({
    ...routeSchema(doc, 'deleteApp'),
    handler: async (request) => registry.deleteApp(request.identity, appKey(request)),
  });

  app.route({
    ...routeSchema(doc, 'listApps'),
    handler: async (request, reply) => {
      const page = await registry.listApps(request.identity, request.query as ListQuery, null, request.url);
      return reply.type('application/json; charset=utf-8').send(page.json);
    },
  });

  app.route({
    ...routeSchema(doc, 'listNamespaceApps'),
    handler: async (request, reply) => {
      const { namespace } = request.params as { namespace: string };
      const page = await registry.listApps(request.identity, request.query as ListQuery, namespace, request.url);
      return reply.type('application/json; charset=utf-8').send(page.json);
    },
  });

  app.route({
    ...routeSchema(doc, 'listAppVersions'),
    handler: async (request) => {
      const { namespace, repository } = request.params as { namespace: string; repository: string };
      return registry.versions(request.identity, namespace, repository);
    },
  });

  app.route({
    ...routeSchema(doc, 'getMetaFile'),
    handler: async (request, reply) => {
      const { file, ...key } = request.params as AppKey & { repository: string; file: string };
      const blob = await registry.metaFile(request.identity, { namespace: key.namespace, name: key.repository, version: key.version }, file);
      const ext = /\.[A-Za-z0-9]+$/.exec(file)?.[0].toLowerCase() ?? '';
      return reply
        .type(META_TYPES[ext] ?? 'application/octet-stream')
        .header('content-length', blob.size)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'")
        .send(await blobs.get(blob.key));
    },
  });

  // ------------------------------------------------------------------ namespaces
  app.route({
    ...routeSchema(doc, 'listNamespaces'),
    handler: async (request) => registry.listNamespaces(request.identity),
  });

  app.route({
    ...rawBodyRoute(doc, 'createNamespace'),
    handler: async (request) => registry.createNamespace(request.identity, request.body),
  });

  app.route({
    ...routeSchema(doc, 'getNamespace'),
    handler: async (request) => registry.getNamespace(request.identity, (request.params as { namespace: string }).namespace),
  });

  app.route({
    ...routeSchema(doc, 'deleteNamespace'),
    handler: async (request) => registry.deleteNamespace(request.identity, (request.params as { namespace: string }).namespace),
  });

  // ------------------------------------------------------------------ repositories
  app.route({
    ...routeSchema(doc, 'listRepositories'),
    handler: async (request) =>
      registry.listRepositories(request.identity, (request.params as { namespace: string }).namespace, request.query as { public?: string; shared?: string }),
  });

  app.route({
    ...routeSchema(doc, 'getRepository'),
    handler: async (request) => {
      const { namespace, repository } = request.params as { namespace: string; repository: string };
      return registry.getRepository(request.identity, namespace, repository);
    },
  });

  app.route({
    ...routeSchema(doc, 'deleteRepository'),
    handler: async (request) => {
      const { namespace, repository } = request.params as { namespace: string; repository: string };
      return registry.deleteRepository(request.identity, namespace, repository);
    },
  });
};
