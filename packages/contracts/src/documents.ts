import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import $RefParser from '@apidevtools/json-schema-ref-parser';
import { parse } from 'yaml';

/** The services, each with `openapi/<name>.yaml`, plus the gateway's own document. */
export const SERVICE_NAMES = ['permissions', 'registry', 'build', 'execution', 'source-cache', 'process'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];
export const DOCUMENT_NAMES = [...SERVICE_NAMES, 'gateway', 'events'] as const;
export type DocumentName = (typeof DOCUMENT_NAMES)[number];

/** The repository's openapi/ folder, the source of truth for every contract. */
export const OPENAPI_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../openapi');

/** The document as written (with $refs), parsed from YAML. */
export function rawDocument(name: DocumentName): Record<string, unknown> {
  return parse(readFileSync(path.join(OPENAPI_DIR, `${name}.yaml`), 'utf8')) as Record<string, unknown>;
}

const dereferenced = new Map<string, Promise<unknown>>();

/** The document with every local $ref inlined, ready to become route schemas. Cached per process. */
export function loadDocument<T = Record<string, unknown>>(name: DocumentName): Promise<T> {
  let doc = dereferenced.get(name);
  if (!doc) {
    doc = $RefParser.dereference(structuredClone(rawDocument(name)) as never, { dereference: { circular: 'ignore' } });
    dereferenced.set(name, doc);
  }
  return doc as Promise<T>;
}

/** The port each service listens on (on 127.0.0.1) unless DOCKYARD_PORT says otherwise. */
export const SERVICE_PORTS: Record<ServiceName, number> = {
  permissions: 7101,
  registry: 7102,
  build: 7103,
  execution: 7104,
  'source-cache': 7105,
  process: 7106,
};
