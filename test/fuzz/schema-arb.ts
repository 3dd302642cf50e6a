/**
 * fast-check arbitraries from the JSON Schema subset the OpenAPI documents use (type, enum, const,
 * pattern, min/maxLength, minimum/maximum, format, items, properties/required/additionalProperties,
 * oneOf/anyOf/allOf, type arrays with 'null'). The one JSON-Schema-to-fast-check library on npm is
 * a 0.0.x release, so this small generator is kept here instead.
 */
import fc from 'fast-check';

export type Schema = Record<string, unknown>;

const FORMATS: Record<string, () => fc.Arbitrary<string>> = {
  uuid: () => fc.uuid(),
  'date-time': () => fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  date: () => fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10)),
  email: () => fc.emailAddress(),
  uri: () => fc.webUrl(),
  url: () => fc.webUrl(),
};

/** Strings a careless parser chokes on: control characters, unicode, quotes, traversal, huge. */
export function nastyString(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: fc.integer({ min: 0, max: 31 }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 8 }),
    fc.constantFrom('\u0000', '%00', '../../etc/passwd', '..\\..\\x', "'; DROP TABLE x; --", '{{7*7}}', '${jndi:x}', '\u202e\u0301😀', '\uFEFF', 'a/b', '?x=1', '#frag', '%', '%zz', 'null', '-1', '0', '1e309', 'NaN', ' '),
    fc.integer({ min: 1000, max: 6000 }).map((n) => 'x'.repeat(n)),
    fc.string({ unit: 'grapheme', maxLength: 30 }),
  );
}

function clampLen(schema: Schema): { minLength: number; maxLength: number } {
  const minLength = Number(schema.minLength ?? 0);
  const maxLength = Math.max(minLength, Math.min(Number(schema.maxLength ?? 24), minLength + 40));
  return { minLength, maxLength };
}

function typesOf(schema: Schema): string[] {
  if (Array.isArray(schema.type)) return schema.type as string[];
  if (typeof schema.type === 'string') return [schema.type];
  if (schema.properties || schema.additionalProperties) return ['object'];
  if (schema.items) return ['array'];
  return [];
}

/** Merges allOf members into one schema (enough for the documents' use: shared properties). */
function mergeAllOf(schema: Schema): Schema {
  const parts = (schema.allOf as Schema[]).map((s) => (s.allOf ? mergeAllOf(s) : s));
  const { allOf: _a, ...rest } = schema;
  const merged: Schema = { ...rest };
  for (const p of parts) {
    for (const [k, v] of Object.entries(p)) {
      if (k === 'properties') merged.properties = { ...(merged.properties as Schema), ...(v as Schema) };
      else if (k === 'required') merged.required = [...new Set([...((merged.required as string[]) ?? []), ...(v as string[])])];
      else if (!(k in merged)) merged[k] = v;
    }
  }
  return merged;
}

/** A value valid against `schema` (as far as this subset goes). */
export function valueOf(schema: Schema | undefined, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || typeof schema !== 'object') return fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean());
  if (schema.allOf) return valueOf(mergeAllOf(schema), depth);
  if ('const' in schema) return fc.constant(schema.const);
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as unknown[]));
  const alternatives = (schema.oneOf ?? schema.anyOf) as Schema[] | undefined;
  if (alternatives?.length) {
    const { oneOf: _o, anyOf: _a, ...base } = schema;
    return fc.oneof(...alternatives.map((alt) => valueOf({ ...base, ...alt }, depth + 1)));
  }
  const types = typesOf(schema);
  if (types.length > 1) return fc.oneof(...types.map((t) => valueOf({ ...schema, type: t }, depth)));
  switch (types[0]) {
    case 'null':
      return fc.constant(null);
    case 'boolean':
      return fc.boolean();
    case 'integer':
    case 'number': {
      const min = typeof schema.minimum === 'number' ? schema.minimum : typeof schema.exclusiveMinimum === 'number' ? schema.exclusiveMinimum + 1 : -1000;
      const max = typeof schema.maximum === 'number' ? schema.maximum : typeof schema.exclusiveMaximum === 'number' ? schema.exclusiveMaximum - 1 : Math.max(min + 1000, 1000);
      if (types[0] === 'integer') return fc.integer({ min: Math.ceil(min), max: Math.floor(max) });
      return fc.double({ min, max, noNaN: true, noDefaultInfinity: true });
    }
    case 'string': {
      if (schema.format === 'binary') return fc.string({ maxLength: 64 });
      const format = typeof schema.format === 'string' ? FORMATS[schema.format] : undefined;
      if (format) return format();
      const { minLength, maxLength } = clampLen(schema);
      if (typeof schema.pattern === 'string') {
        let re: RegExp;
        try {
          re = new RegExp(schema.pattern, 'u');
        } catch {
          re = new RegExp(schema.pattern);
        }
        return fc.stringMatching(re, { size: 'xsmall' }).filter((s) => s.length >= minLength && s.length <= Number(schema.maxLength ?? Infinity));
      }
      return fc.string({ minLength, maxLength });
    }
    case 'array': {
      const min = Number(schema.minItems ?? 0);
      const item = depth > 4 ? fc.constant(null) : valueOf(schema.items as Schema, depth + 1);
      const arr = fc.array(item, { minLength: min, maxLength: Math.min(Number(schema.maxItems ?? min + 3), min + 3) });
      return schema.uniqueItems ? arr.map((a) => [...new Map(a.map((v) => [JSON.stringify(v), v])).values()]).filter((a) => a.length >= min) : arr;
    }
    case 'object': {
      const props = (schema.properties ?? {}) as Record<string, Schema>;
      const required = ((schema.required as string[]) ?? []).filter((k) => k in props || true);
      const known: Record<string, fc.Arbitrary<unknown>> = {};
      for (const key of new Set([...Object.keys(props), ...required])) known[key] = depth > 4 ? fc.constant(null) : valueOf(props[key], depth + 1);
      const record = fc.record(known, { requiredKeys: required });
      const extra = schema.additionalProperties;
      if (extra && typeof extra === 'object' && depth <= 4) {
        const names = schema.propertyNames ? (valueOf({ type: 'string', ...(schema.propertyNames as Schema) }, depth + 1) as fc.Arbitrary<string>) : fc.string({ minLength: 1, maxLength: 12 });
        const min = Number(schema.minProperties ?? 0);
        return fc.tuple(record, fc.dictionary(names, valueOf(extra as Schema, depth + 1), { minKeys: min, maxKeys: min + 3 })).map(([r, d]) => ({ ...d, ...r }));
      }
      return record;
    }
    default:
      return fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), fc.constant(null));
  }
}

/** A value of the wrong kind for `schema`: another JSON type, out of range, or nasty text. */
export function wrongValueOf(schema: Schema | undefined): fc.Arbitrary<unknown> {
  const types = schema ? typesOf(schema) : [];
  const candidates: fc.Arbitrary<unknown>[] = [nastyString(), fc.constant(null), fc.constant([]), fc.constant({}), fc.boolean(), fc.double()];
  if (types.includes('string')) candidates.splice(1, 0, fc.integer(), fc.array(fc.string(), { maxLength: 2 }));
  if (types.includes('integer') || types.includes('number')) candidates.push(fc.constantFrom(-1, 0, 2 ** 53, -(2 ** 63), 1.5, '12abc', '1e400'));
  return fc.oneof(...candidates);
}
