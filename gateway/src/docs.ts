import type { FastifyPluginAsync } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { SERVICE_NAMES, loadDocument } from '@dockyard/contracts';

type Doc = { paths?: Record<string, unknown>; components?: { securitySchemes?: Record<string, unknown> }; tags?: unknown[] };

/** One OpenAPI document for the whole public API: every service's paths plus the gateway's own. */
export async function mergedDocument(): Promise<Record<string, unknown>> {
  const paths: Record<string, unknown> = {};
  const securitySchemes: Record<string, unknown> = {};
  const tags: unknown[] = [];
  for (const name of [...SERVICE_NAMES, 'gateway'] as const) {
    const doc = await loadDocument<Doc>(name);
    Object.assign(paths, doc.paths ?? {});
    Object.assign(securitySchemes, doc.components?.securitySchemes ?? {});
    tags.push(...(doc.tags ?? []));
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Dockyard',
      version: '0.1.0',
      description: 'One gateway speaking the SAGE ECR, Cachito v1, Kabuto and REE APIs unchanged. Each path keeps the original API\'s shapes; differences are stated per operation.',
    },
    tags,
    paths,
    components: { securitySchemes },
  };
}

/** `/openapi.json` (the merged document) and `/docs` (Swagger UI, served from local files). */
export const docsPlugin: FastifyPluginAsync = async (app) => {
  const document = await mergedDocument();
  await app.register(swagger, { mode: 'static', specification: { document: document as never } });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true }, staticCSP: true });
  app.get('/openapi.json', { config: { public: true } }, async () => document);
};
