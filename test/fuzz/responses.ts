/**
 * The properties every response must have: not a 5xx, a status the operation documents, a content
 * type the operation documents for that status, and a JSON body matching the documented schema
 * (a 4xx without its own schema: the `Error` shape).
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Operation } from './operations.js';
import type { Schema } from './schema-arb.js';

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
const compiled = new WeakMap<object, ValidateFunction>();

function validator(schema: Schema): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

export interface Answer {
  status: number;
  contentType: string | null;
  /** The body as text (cut short for streams and downloads). */
  text: string;
}

function documented(op: Operation, status: number) {
  const s = String(status);
  return op.responses[s] ?? op.responses[`${s[0]}XX`] ?? op.responses[`${s[0]}xx`] ?? op.responses.default;
}

const mediaOf = (contentType: string | null) => (contentType ?? '').split(';')[0].trim().toLowerCase();

function mediaMatches(documentedType: string, actual: string): boolean {
  if (documentedType === '*/*' || documentedType === actual) return true;
  if (documentedType.endsWith('/*')) return actual.startsWith(documentedType.slice(0, -1));
  return false;
}

/** What is wrong with `answer` for `op`, or undefined when nothing is. */
export function problemWith(op: Operation, answer: Answer): string | undefined {
  const { status } = answer;
  const response = documented(op, status);
  // A 500 is a crash whatever the document says; a documented 502/503 is a designed answer
  // (e.g. Cachito's /status/short while a package index is unreachable, as it is on this machine).
  if (status === 500 || (status > 500 && !response)) return `server error ${status}: ${answer.text.slice(0, 500)}`;
  if (!response) return `status ${status} is not documented for ${op.operationId} (documented: ${Object.keys(op.responses).join(', ')}); body: ${answer.text.slice(0, 300)}`;
  const media = mediaOf(answer.contentType);
  const content = response.content;
  if (content && Object.keys(content).length) {
    const match = Object.keys(content).find((t) => mediaMatches(t.toLowerCase(), media));
    if (!match) return `content type ${answer.contentType ?? '(none)'} is not documented for ${status} (documented: ${Object.keys(content).join(', ')}); body: ${answer.text.slice(0, 300)}`;
    const schema = content[match].schema;
    if (schema && (media === 'application/json' || media.endsWith('+json'))) return jsonProblem(schema, answer);
    return undefined;
  }
  if (status >= 400) {
    if (media !== 'application/json') return `a ${status} with content type ${answer.contentType ?? '(none)'} rather than the {"error"} JSON body: ${answer.text.slice(0, 300)}`;
    return jsonProblem(op.errorSchema, answer);
  }
  return undefined;
}

function jsonProblem(schema: Schema, answer: Answer): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch {
    return `body is not JSON: ${answer.text.slice(0, 300)}`;
  }
  const validate = validator(schema);
  if (validate(body)) return undefined;
  return `body does not match the documented schema for ${answer.status}: ${ajv.errorsText(validate.errors)}; body: ${answer.text.slice(0, 400)}`;
}
