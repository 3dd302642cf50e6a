/**
 * Requests for one operation, valid (from its documented parameters and body schemas) and not
 * (wrong types, missing or unknown fields, huge or control-character strings, bad JSON, wrong
 * content types), as plain data so fast-check can shrink and print them.
 */
import fc from 'fast-check';
import type { Operation, Parameter } from './operations.js';
import { nastyString, valueOf, wrongValueOf, type Schema } from './schema-arb.js';

export type Identity = 'anonymous' | 'testuser' | 'testuser2' | 'admin';
export const IDENTITIES: Identity[] = ['anonymous', 'testuser', 'testuser2', 'admin'];

export type Field = [name: string, value: string] | [name: string, value: string, filename: string];

export type Body =
  | { kind: 'json'; contentType: string; value: unknown }
  | { kind: 'form'; fields: Field[] }
  | { kind: 'multipart'; fields: Field[] }
  | { kind: 'raw'; contentType: string | null; text: string };

export interface FuzzRequest {
  identity: Identity;
  method: string;
  /** Path and query, percent-encoded, ready to append to the gateway's base URL. */
  url: string;
  body?: Body;
  /** What was made invalid, if anything (for reading a counterexample). */
  invalid?: string;
}

/** Existing resources the tests made, by parameter name, so valid requests reach more than a 404. */
export type Known = Record<string, string[]>;

/** Lone surrogates would make encodeURIComponent throw; a client sends U+FFFD for them. */
function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** `.` and `..` segments are resolved away by every URL parser: they would name another path. */
const routable = (s: string) => s !== '' && s !== '.' && s !== '..' && !/^(%2e|\.){1,2}$/i.test(s);

function asText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function validParam(p: Parameter, known: Known): fc.Arbitrary<string> {
  const fromSchema = valueOf(p.schema ?? { type: 'string', minLength: 1 }).map(asText);
  const seeds = known[p.name];
  const arb = seeds?.length ? fc.oneof({ arbitrary: fc.constantFrom(...seeds), weight: 3 }, { arbitrary: fromSchema, weight: 1 }) : fromSchema;
  return arb.filter(routable);
}

function invalidParam(p: Parameter): fc.Arbitrary<string> {
  return fc.oneof(nastyString(), wrongValueOf(p.schema).map(asText)).filter(routable);
}

function fieldsOf(value: unknown, schema: Schema | undefined): Field[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [['value', asText(value)]];
  const props = (schema?.properties ?? {}) as Record<string, Schema>;
  const fields: Field[] = [];
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    const prop = props[name];
    const binary = prop?.format === 'binary' || (prop?.items as Schema | undefined)?.format === 'binary';
    const values = Array.isArray(v) && (prop?.type === 'array' || Array.isArray(prop?.type)) ? v : [v];
    for (const one of values) fields.push(binary ? [name, asText(one), `${name}.bin`] : [name, asText(one)]);
  }
  return fields;
}

/** The body in the wire format of `contentType`. */
function encodeBody(contentType: string, value: unknown, schema: Schema | undefined): Body {
  if (contentType === 'application/json' || contentType.endsWith('+json')) return { kind: 'json', contentType, value };
  if (contentType === 'application/x-www-form-urlencoded') return { kind: 'form', fields: fieldsOf(value, schema) };
  if (contentType === 'multipart/form-data') return { kind: 'multipart', fields: fieldsOf(value, schema) };
  // YAML is a superset of JSON; text/plain bodies of the ECR documents are YAML or JSON too.
  return { kind: 'raw', contentType, text: typeof value === 'string' ? value : JSON.stringify(value) };
}

function bodyMutations(schema: Schema | undefined, contentType: string): fc.Arbitrary<{ value: unknown; invalid: string }>[] {
  const props = Object.keys((schema?.properties ?? {}) as Record<string, unknown>);
  const required = (schema?.required as string[] | undefined) ?? [];
  const valid = valueOf(schema);
  const out: fc.Arbitrary<{ value: unknown; invalid: string }>[] = [
    fc.tuple(valid, fc.string({ minLength: 1, maxLength: 12 }), nastyString()).map(([v, k, x]) => ({
      value: v && typeof v === 'object' && !Array.isArray(v) ? { ...v, [k]: x } : { [k]: x },
      invalid: `unknown field ${JSON.stringify(k)}`,
    })),
    fc.oneof(fc.constant(null), fc.constant([]), fc.integer(), nastyString(), fc.array(fc.integer(), { maxLength: 3 })).map((value) => ({ value, invalid: 'body of the wrong JSON type' })),
  ];
  if (required.length) {
    out.push(fc.tuple(valid, fc.constantFrom(...required)).map(([v, k]) => {
      const copy = { ...(v as Record<string, unknown>) };
      delete copy[k];
      return { value: copy, invalid: `missing required ${k}` };
    }));
  }
  if (props.length) {
    out.push(fc.tuple(valid, fc.constantFrom(...props)).chain(([v, k]) =>
      wrongValueOf(((schema!.properties as Record<string, Schema>)[k])).map((wrong) => ({
        value: v && typeof v === 'object' && !Array.isArray(v) ? { ...v, [k]: wrong } : { [k]: wrong },
        invalid: `field ${k} of the wrong type or nasty`,
      })),
    ));
    out.push(fc.tuple(valid, fc.constantFrom(...props), fc.integer({ min: 20_000, max: 200_000 })).map(([v, k, n]) => ({
      value: v && typeof v === 'object' && !Array.isArray(v) ? { ...v, [k]: 'é'.repeat(n) } : { [k]: 'é'.repeat(n) },
      invalid: `huge ${k} (${n} chars)`,
    })));
  }
  void contentType;
  return out;
}

function invalidBody(op: Operation): fc.Arbitrary<{ body?: Body; invalid: string }> {
  const content = op.requestBody?.content ?? {};
  const types = Object.keys(content);
  const options: fc.Arbitrary<{ body?: Body; invalid: string }>[] = [
    fc.constant({ body: undefined, invalid: 'no body' }),
    fc.tuple(fc.constantFrom('application/xml', 'text/html', 'application/octet-stream', 'image/png', 'application/json; charset=utf-16', 'multipart/form-data'), fc.string({ maxLength: 40 })).map(([contentType, text]) => ({
      body: { kind: 'raw', contentType, text } as Body,
      invalid: `content type ${contentType}`,
    })),
  ];
  for (const type of types) {
    const schema = content[type].schema;
    options.push(
      fc.constantFrom('{', '{"a":', '[1,2', 'nul', '\u0000\u0001', '{"__proto__": {"x": 1}}', '{"constructor": {"prototype": {"y": 1}}}', '"\\ud800"', '1'.repeat(400), '{}', '', '{"a":1,"a":2}').map((text) => ({
        body: { kind: 'raw', contentType: type === 'multipart/form-data' ? 'multipart/form-data; boundary=xyz' : type, text } as Body,
        invalid: `malformed ${type}`,
      })),
    );
    for (const mutation of bodyMutations(schema, type)) options.push(mutation.map(({ value, invalid }) => ({ body: encodeBody(type, value, schema), invalid: `${invalid} (${type})` })));
  }
  return fc.oneof(...options);
}

function buildUrl(op: Operation, path: Record<string, string>, query: [string, string][]): string {
  const url = op.path.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(wellFormed(path[name] ?? '')));
  const qs = query.map(([k, v]) => `${encodeURIComponent(wellFormed(k))}=${encodeURIComponent(wellFormed(v))}`).join('&');
  return qs ? `${url}?${qs}` : url;
}

/** Requests for `op`: about half valid by its documented schemas, half with one thing made invalid. */
export function requestArbitrary(op: Operation, known: Known, identities: Identity[] = IDENTITIES): fc.Arbitrary<FuzzRequest> {
  const pathParams = op.parameters.filter((p) => p.in === 'path');
  const queryParams = op.parameters.filter((p) => p.in === 'query');
  const identity = fc.constantFrom(...identities);

  const validPath = fc.record(Object.fromEntries(pathParams.map((p) => [p.name, validParam(p, known)])));
  const validQuery = fc
    .tuple(...queryParams.map((p) => (p.required ? validParam(p, known).map((v) => [[p.name, v]] as [string, string][]) : fc.option(validParam(p, known), { nil: undefined }).map((v) => (v === undefined ? [] : [[p.name, v]] as [string, string][])))))
    .map((parts) => parts.flat());
  const content = op.requestBody?.content ?? {};
  const types = Object.keys(content);
  const validBody: fc.Arbitrary<Body | undefined> = types.length
    ? fc.constantFrom(...types).chain((type) => valueOf(content[type].schema).map((v) => encodeBody(type, v, content[type].schema)))
    : fc.constant(undefined);

  const valid = fc.record({ identity, path: validPath, query: validQuery, body: validBody }).map(({ identity, path, query, body }) => ({ identity, method: op.method, url: buildUrl(op, path, query), body }) as FuzzRequest);

  const invalidOptions: fc.Arbitrary<FuzzRequest>[] = [];
  for (const p of pathParams) {
    invalidOptions.push(
      fc.record({ identity, path: validPath, bad: invalidParam(p), query: validQuery, body: validBody }).map(({ identity, path, bad, query, body }) => ({
        identity, method: op.method, url: buildUrl(op, { ...path, [p.name]: bad }, query), body, invalid: `path ${p.name}`,
      })),
    );
  }
  invalidOptions.push(
    fc.record({ identity, path: validPath, query: validQuery, body: validBody, name: fc.oneof(fc.constantFrom(...queryParams.map((p) => p.name), 'x'), fc.string({ minLength: 1, maxLength: 10 })), bad: invalidParam({ name: 'q', in: 'query', schema: queryParams[0]?.schema }) }).map(({ identity, path, query, body, name, bad }) => ({
      identity, method: op.method, url: buildUrl(op, path, [...query, [name, bad]]), body, invalid: `query ${name}`,
    })),
  );
  if (op.requestBody) {
    invalidOptions.push(
      fc.record({ identity, path: validPath, query: validQuery, bad: invalidBody(op) }).map(({ identity, path, query, bad }) => ({
        identity, method: op.method, url: buildUrl(op, path, query), body: bad.body, invalid: bad.invalid,
      })),
    );
  }
  return fc.oneof(valid, ...invalidOptions);
}

/** The fetch() init for `req`, with the identity's credential. */
export function toFetch(req: FuzzRequest, credentials: Record<Identity, string | null>): { url: string; init: RequestInit } {
  const headers: Record<string, string> = {};
  const credential = credentials[req.identity];
  if (credential) headers.authorization = credential;
  let body: RequestInit['body'];
  const b = req.body;
  if (b?.kind === 'json') {
    headers['content-type'] = b.contentType;
    body = JSON.stringify(b.value) ?? 'null';
  } else if (b?.kind === 'form') {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(b.fields.map(([k, v]) => [k, v] as [string, string])).toString();
  } else if (b?.kind === 'multipart') {
    const form = new FormData();
    for (const [name, value, filename] of b.fields) {
      if (filename) form.append(name, new Blob([value]), filename);
      else form.append(name, value);
    }
    body = form;
  } else if (b?.kind === 'raw') {
    if (b.contentType) headers['content-type'] = b.contentType;
    body = b.text;
  }
  return { url: req.url, init: { method: req.method, headers, body } };
}
