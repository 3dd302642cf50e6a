import { isScalar, parseDocument as parseYamlDocument } from 'yaml';
import { HttpError, badRequest } from '@dockyard/kit';
import type { RegistryApp } from '@dockyard/contracts';

/** The largest app document accepted (ECR's limit). */
export const MAX_DOCUMENT_BYTES = 32 * 1024;

export const ARCHITECTURES = ['linux/amd64', 'linux/arm64', 'linux/arm/v6', 'linux/arm/v7', 'linux/arm/v8'] as const;
export const INPUT_TYPES = ['boolean', 'int', 'long', 'float', 'double', 'string', 'File'] as const;

/**
 * Namespace and repository names: lower-case letters, digits, '-', '_' and '.', starting with a
 * letter or digit (the permissions service's rule too, so never '.' or '..').
 */
export const NAME = /^[a-z0-9][a-z0-9._-]*$/;
export const VERSION = /^[A-Za-z0-9._+-]{1,128}$/;

export const NAME_RULE = (field: string) => `${field}: may hold only lower-case letters, digits, '-', '_' and '.' (starting with a letter or digit)`;

export function validName(name: string): boolean {
  return NAME.test(name) && name.length <= 128;
}

const TOP_LEVEL = [
  'namespace', 'name', 'version', 'description', 'keywords', 'authors', 'collaborators', 'homepage', 'funding', 'license',
  'source', 'depends_on', 'baseCommand', 'arguments', 'inputs', 'resources', 'metadata', 'frozen', 'testing',
] as const;
const STRING_FIELDS = ['keywords', 'authors', 'collaborators', 'homepage', 'funding', 'license', 'depends_on', 'baseCommand', 'arguments'] as const;
const SOURCE_FIELDS = ['url', 'branch', 'tag', 'directory', 'dockerfile', 'build_args', 'architectures', 'name', 'git_commit'] as const;

/** An app's `source` block as stored (the contract the build service reads through registry.app.get). */
export type AppSource = RegistryApp['source'];

export interface AppInput {
  id: string;
  type: (typeof INPUT_TYPES)[number];
  description?: string;
  default?: unknown;
}

/** A checked app document (what a submit stores, before id, owner and commit are added). */
export interface AppDocument {
  namespace?: string;
  name?: string;
  version?: string;
  description: string;
  keywords: string;
  authors: string;
  collaborators: string;
  homepage: string;
  funding: string;
  license: string;
  source: AppSource;
  depends_on: string;
  baseCommand: string;
  arguments: string;
  inputs: AppInput[];
  resources: Record<string, unknown>[];
  metadata: Record<string, unknown>;
  frozen: boolean;
  testing?: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const fail = (message: string): never => {
  throw badRequest(message);
};

/**
 * Parses an app document sent as JSON or YAML, whatever the content type said (ECR's curl examples
 * send YAML files as forms). YAML is parsed with the core schema (no custom tags, no code) and a
 * bounded alias count, so a "billion laughs" document cannot blow up.
 */
export function parseDocument(raw: string | Buffer | undefined): unknown {
  const text = (Buffer.isBuffer(raw) ? raw.toString('utf8') : (raw ?? '')).replace(/^\uFEFF/, '');
  if (Buffer.byteLength(text) > MAX_DOCUMENT_BYTES) throw new HttpError(413, `App document larger than ${MAX_DOCUMENT_BYTES} bytes`);
  if (!text.trim()) fail('The app document is empty (send JSON or YAML)');
  try {
    return JSON.parse(text);
  } catch {
    // Not JSON: YAML (of which JSON is a subset, so a broken JSON document gets YAML's message).
  }
  let parsed: unknown;
  try {
    const yaml = parseYamlDocument(text, { schema: 'core', prettyErrors: false, uniqueKeys: true });
    if (yaml.errors.length) throw yaml.errors[0];
    parsed = yaml.toJS({ maxAliasCount: 50 });
    // `version: 1.0` is a YAML number: keep what was written, not 1.
    const version = yaml.get('version', true);
    if (isScalar(version) && typeof version.value === 'number' && version.source) (parsed as Record<string, unknown>).version = version.source;
  } catch (err) {
    return fail(`The app document is neither valid JSON nor valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  return parsed;
}

function optionalString(doc: Record<string, unknown>, field: string, where = field): string | undefined {
  const v = doc[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') fail(`${where}: must be a string`);
  return v as string;
}

/** A path inside the repository: relative, no `..`, no odd characters. */
function relativePath(value: string, where: string): string {
  const clean = value.replace(/^\.\/+/, '').replace(/\/+$/, '');
  if (value.startsWith('/') || /[\0-\x1f\\]/.test(value) || clean.split('/').some((s) => s === '..')) {
    fail(`${where}: must be a relative path inside the repository`);
  }
  return clean;
}

function checkSource(value: unknown): AppSource {
  if (value === undefined || value === null) fail('source: required, an object with url and architectures');
  if (!isObject(value)) fail('source: must be an object');
  const src = value as Record<string, unknown>;
  for (const key of Object.keys(src)) if (!(SOURCE_FIELDS as readonly string[]).includes(key)) fail(`Field source.${key} not supported`);
  const url = optionalString(src, 'url', 'source.url');
  if (!url || !url.trim()) fail('source.url: required, a git URL');
  const branch = optionalString(src, 'branch', 'source.branch');
  const tag = optionalString(src, 'tag', 'source.tag');
  for (const [field, ref] of [['branch', branch], ['tag', tag]] as const) {
    if (ref !== undefined && (!ref || ref.startsWith('-') || /[\0-\x20~^:?*[\\]|\.\.|@\{/.test(ref))) fail(`source.${field}: not a valid git ${field} name`);
  }
  const directoryRaw = optionalString(src, 'directory', 'source.directory');
  const directory = directoryRaw === undefined ? undefined : relativePath(directoryRaw, 'source.directory');
  const dockerfileRaw = optionalString(src, 'dockerfile', 'source.dockerfile') ?? 'Dockerfile';
  if (!dockerfileRaw) fail('source.dockerfile: must be a non-empty path');
  const dockerfile = relativePath(dockerfileRaw, 'source.dockerfile');
  const buildArgs = src.build_args ?? {};
  if (!isObject(buildArgs)) fail('source.build_args: must be an object of strings');
  for (const [k, v] of Object.entries(buildArgs as Record<string, unknown>)) {
    if (typeof v !== 'string') fail(`source.build_args.${k}: must be a string`);
  }
  const archs = src.architectures;
  if (archs === undefined || archs === null) fail(`source.architectures: required, a non-empty list of ${ARCHITECTURES.join(', ')}`);
  if (!Array.isArray(archs) || archs.length === 0) fail(`source.architectures: must be a non-empty list of ${ARCHITECTURES.join(', ')}`);
  for (const a of archs as unknown[]) {
    if (!(ARCHITECTURES as readonly unknown[]).includes(a)) fail(`source.architectures: ${JSON.stringify(a)} is not one of ${ARCHITECTURES.join(', ')}`);
  }
  if (new Set(archs as string[]).size !== (archs as string[]).length) fail('source.architectures: must not repeat an architecture');
  const name = optionalString(src, 'name', 'source.name');
  return {
    url: url as string,
    ...(branch !== undefined ? { branch } : {}),
    ...(tag !== undefined ? { tag } : {}),
    ...(directory ? { directory } : {}),
    dockerfile,
    build_args: buildArgs as Record<string, string>,
    architectures: archs as string[],
    ...(name !== undefined ? { name } : {}),
  };
}

function checkInputs(value: unknown): AppInput[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail('inputs: must be a list');
  return (value as unknown[]).map((input, i) => {
    const where = `inputs[${i}]`;
    if (!isObject(input)) fail(`${where}: must be an object with id and type`);
    const entry = input as Record<string, unknown>;
    for (const key of Object.keys(entry)) if (!['id', 'type', 'description', 'default'].includes(key)) fail(`Field ${where}.${key} not supported`);
    if (typeof entry.id !== 'string' || !entry.id) fail(`${where}.id: required, a non-empty string`);
    if (!(INPUT_TYPES as readonly unknown[]).includes(entry.type)) fail(`${where}.type: must be one of ${INPUT_TYPES.join(', ')}`);
    if (entry.description !== undefined && typeof entry.description !== 'string') fail(`${where}.description: must be a string`);
    return entry as unknown as AppInput;
  });
}

/**
 * Checks a parsed app document against ECR's rules; every violation is a 400 naming the field
 * (ECR answered 500 for most of them).
 */
export function checkDocument(value: unknown): AppDocument {
  if (!isObject(value)) fail('The app document must be a JSON or YAML object');
  const doc = value as Record<string, unknown>;
  for (const key of Object.keys(doc)) if (!(TOP_LEVEL as readonly string[]).includes(key)) fail(`Field ${key} not supported`);
  const namespace = optionalString(doc, 'namespace');
  if (namespace !== undefined && !validName(namespace)) fail(NAME_RULE('namespace'));
  const name = optionalString(doc, 'name');
  if (name !== undefined && !validName(name)) fail(NAME_RULE('name'));
  let version = doc.version;
  if (typeof version === 'number') version = String(version); // YAML `version: 1.0` is a number
  if (version !== undefined && version !== null && (typeof version !== 'string' || !VERSION.test(version))) {
    fail("version: may hold only letters, digits, '.', '_', '+' and '-' (at most 128)");
  }
  const description = doc.description;
  if (typeof description !== 'string' || !description.trim()) fail('description: required, a non-empty string');
  const strings = Object.fromEntries(STRING_FIELDS.map((f) => [f, optionalString(doc, f) ?? '']));
  const resources = doc.resources ?? [];
  if (!Array.isArray(resources)) fail('resources: must be a list');
  (resources as unknown[]).forEach((r, i) => isObject(r) || fail(`resources[${i}]: must be an object`));
  const metadata = doc.metadata ?? {};
  if (!isObject(metadata)) fail('metadata: must be an object');
  const frozen = doc.frozen ?? false;
  if (typeof frozen !== 'boolean') fail('frozen: must be true or false');
  const testing = doc.testing;
  if (testing !== undefined && testing !== null && !isObject(testing)) fail('testing: must be an object');
  return {
    ...(namespace !== undefined ? { namespace } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(version !== undefined && version !== null ? { version: version as string } : {}),
    description: description as string,
    ...(strings as Record<(typeof STRING_FIELDS)[number], string>),
    source: checkSource(doc.source),
    inputs: checkInputs(doc.inputs),
    resources: resources as Record<string, unknown>[],
    metadata: metadata as Record<string, unknown>,
    frozen: frozen as boolean,
    ...(testing ? { testing: testing as Record<string, unknown> } : {}),
  };
}
