/** Every operation of every service's OpenAPI document (and the gateway's), as the gateway routes them. */
import { SERVICE_NAMES, loadDocument, type DocumentName } from '@dockyard/contracts';
import type { Schema } from './schema-arb.js';

export interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: Schema;
}

export interface MediaType {
  schema?: Schema;
}

export interface Operation {
  document: DocumentName;
  operationId: string;
  method: string;
  /** The templated path, e.g. /apps/{namespace}/{repository}/{version}. */
  path: string;
  parameters: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, MediaType> };
  responses: Record<string, { content?: Record<string, MediaType> }>;
  /** The document's `Error` schema (every 4xx body without its own schema must match it). */
  errorSchema: Schema;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
const FALLBACK_ERROR: Schema = { type: 'object', required: ['error'], properties: { error: { type: 'string' } } };

/** Every operation, in document order (services first, then the gateway's own endpoints). */
export async function loadOperations(): Promise<Operation[]> {
  const ops: Operation[] = [];
  for (const document of [...SERVICE_NAMES, 'gateway'] as DocumentName[]) {
    const doc = await loadDocument<{ paths: Record<string, Record<string, unknown>>; components?: { schemas?: Record<string, Schema> } }>(document);
    const errorSchema = doc.components?.schemas?.Error ?? FALLBACK_ERROR;
    for (const [path, item] of Object.entries(doc.paths)) {
      const shared = (item.parameters as Parameter[] | undefined) ?? [];
      for (const method of METHODS) {
        const op = item[method] as (Record<string, unknown> & { operationId: string }) | undefined;
        if (!op) continue;
        const own = (op.parameters as Parameter[] | undefined) ?? [];
        const parameters = [...shared.filter((p) => !own.some((o) => o.name === p.name && o.in === p.in)), ...own];
        ops.push({
          document,
          operationId: op.operationId,
          method: method.toUpperCase(),
          path,
          parameters,
          requestBody: op.requestBody as Operation['requestBody'],
          responses: (op.responses ?? {}) as Operation['responses'],
          errorSchema,
        });
      }
    }
  }
  return ops;
}
