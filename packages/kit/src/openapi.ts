import type { FastifySchema } from 'fastify';

/** The parts of an OpenAPI 3.1 document this module reads (already dereferenced). */
export interface OpenApiDocument {
  paths: Record<string, Record<string, OpenApiOperation>>;
  [key: string]: unknown;
}
interface OpenApiParameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: Record<string, unknown>;
  description?: string;
}
interface OpenApiOperation {
  operationId?: string;
  parameters?: OpenApiParameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: Record<string, unknown> }> };
  responses?: Record<string, { content?: Record<string, { schema?: Record<string, unknown> }> }>;
}

export interface OperationRef {
  method: string;
  path: string;
  operation: OpenApiOperation;
  pathParameters: OpenApiParameter[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

/** Finds an operation by operationId. */
export function findOperation(doc: OpenApiDocument, operationId: string): OperationRef {
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (operation?.operationId === operationId) {
        const shared = (item as unknown as { parameters?: OpenApiParameter[] }).parameters ?? [];
        return { method: method.toUpperCase(), path, operation, pathParameters: shared };
      }
    }
  }
  throw new Error(`operationId ${operationId} is not in the OpenAPI document`);
}

// Body media types Fastify parses and validates; multipart and raw uploads are streamed by routes.
const VALIDATED_BODIES = ['application/json', 'application/x-www-form-urlencoded'];

function objectOf(params: OpenApiParameter[]): Record<string, unknown> | undefined {
  if (!params.length) return undefined;
  return {
    type: 'object',
    properties: Object.fromEntries(params.map((p) => [p.name, p.schema ?? {}])),
    required: params.filter((p) => p.required || p.in === 'path').map((p) => p.name),
  };
}

/**
 * The route of an OpenAPI operation: method, URL and the Fastify schema (params, querystring,
 * validated request bodies, JSON responses). Spread into `app.route({...routeSchema(doc, id), handler})`
 * so validation, serialization and the published docs agree.
 */
export function routeSchema(doc: OpenApiDocument, operationId: string): { method: string; url: string; schema: FastifySchema } {
  const { method, path, operation, pathParameters } = findOperation(doc, operationId);
  const params = [...pathParameters, ...(operation.parameters ?? [])];
  const schema: FastifySchema = { operationId } as FastifySchema;
  const pathSchema = objectOf(params.filter((p) => p.in === 'path'));
  const querySchema = objectOf(params.filter((p) => p.in === 'query'));
  if (pathSchema) schema.params = pathSchema;
  if (querySchema) schema.querystring = querySchema;
  const content = operation.requestBody?.content ?? {};
  const bodies = Object.entries(content).filter(([type, c]) => VALIDATED_BODIES.includes(type) && c.schema);
  if (bodies.length === 1 && Object.keys(content).length === 1) schema.body = bodies[0][1].schema;
  else if (bodies.length) schema.body = { content: Object.fromEntries(bodies.map(([type, c]) => [type, { schema: c.schema }])) };
  const responses: Record<string, unknown> = {};
  for (const [status, response] of Object.entries(operation.responses ?? {})) {
    const json = response.content?.['application/json']?.schema;
    if (json) responses[status] = json;
  }
  if (Object.keys(responses).length) schema.response = responses;
  return { method, url: path.replace(/\{([^}]+)\}/g, ':$1'), schema };
}
