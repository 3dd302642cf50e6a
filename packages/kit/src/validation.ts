import type { FastifySchemaValidationError } from 'fastify/types/schema.js';

/**
 * Turns Ajv errors into one message that names the offending field, e.g.
 * `Field "foo" not supported` or `body/source/url must be string`.
 */
export function formatValidationErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const e = errors[0];
  const where = `${dataVar}${e.instancePath}`.replace(/^body\//, '').replace(/^querystring\//, '');
  const params = e.params as Record<string, unknown>;
  let message: string;
  if (e.keyword === 'additionalProperties') {
    message = `Field ${e.instancePath ? `${e.instancePath.slice(1)}/` : ''}${String(params.additionalProperty)} not supported`;
  } else if (e.keyword === 'required') {
    const field = `${e.instancePath ? `${e.instancePath.slice(1)}/` : ''}${String(params.missingProperty)}`;
    message = `Field ${field} is required${dataVar === 'body' ? '' : ` (${dataVar})`}`;
  } else if (e.keyword === 'enum') {
    message = `${where} must be one of: ${(params.allowedValues as unknown[]).join(', ')}`;
  } else {
    message = `${where} ${e.message ?? 'is invalid'}`;
  }
  const err = new Error(message) as Error & { statusCode: number; validation: unknown };
  err.statusCode = 400;
  err.validation = errors;
  return err;
}
