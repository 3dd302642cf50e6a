import type { FastifyRequest } from 'fastify';
import type { MultipartFile } from '@fastify/multipart';
import { badRequest, hasControlCharacter, HttpError } from '@dockyard/kit';
import type { ExecutionConfig } from '../config.js';
import { parseSize } from '../config.js';
import type { AttachmentUpload } from './uploads.js';

export type RawForm = Record<string, unknown>;

/** The smallest memory limit the engine accepts. */
const MIN_MEMORY = 6 * 1024 * 1024;

/**
 * The fields of a form, JSON or multipart body. Multipart files under `attachments` go to
 * `upload` as they stream in; a file anywhere else is refused.
 */
export async function readForm(request: FastifyRequest, upload?: AttachmentUpload): Promise<RawForm> {
  if (!request.isMultipart()) return (request.body ?? {}) as RawForm;
  const fields: Record<string, string | string[]> = {};
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        const file = part as MultipartFile;
        if (!upload || file.fieldname !== 'attachments') {
          file.file.resume();
          throw badRequest(`Field ${file.fieldname} does not take files${upload ? ' (files go in "attachments")' : ''}`);
        }
        await upload.add(file.filename, file.file);
      } else {
        const value = String(part.value);
        const prev = fields[part.fieldname];
        fields[part.fieldname] = prev === undefined ? value : ([] as string[]).concat(prev, value);
      }
    }
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'FST_FILES_LIMIT') throw new HttpError(413, `Too many attachments`);
    if (code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') throw new HttpError(413, 'Too many form fields');
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw new HttpError(413, 'An attachment is too large');
    throw err;
  }
  return fields;
}

const last = (v: unknown): unknown => (Array.isArray(v) ? v[v.length - 1] : v);
function str(form: RawForm, name: string): string | undefined {
  const v = last(form[name]);
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object') throw badRequest(`${name} must be a string`);
  return String(v);
}

/** A pipeline's name. */
export function pipelineName(form: RawForm, required: boolean): string | undefined {
  const name = str(form, 'name');
  if (name === undefined || name === '') {
    if (required) throw badRequest('Field name is required');
    return undefined;
  }
  if (name.length > 128) throw badRequest('name must NOT have more than 128 characters');
  // NUL cannot be stored (PostgreSQL text) and control characters forge log lines and listings.
  if (hasControlCharacter(name)) throw badRequest('name must not contain control characters');
  return name;
}

export interface JobSpec {
  command: string;
  imageId: string;
  timeout: number;
  memory: number;
  nanoCpus: number;
  env: string[];
  network: boolean;
  retries: number;
}

/** Validates a job's fields against the configured defaults and maxima (400 naming the field). */
export function jobSpec(form: RawForm, config: ExecutionConfig): JobSpec {
  const command = str(form, 'command');
  if (!command) throw badRequest('Field command is required');
  const imageId = str(form, 'image_id');
  if (!imageId) throw badRequest('Field image_id is required');

  const int = (name: string, def: number, min: number, max: number): number => {
    const v = str(form, name);
    if (v === undefined || v === '') return def;
    if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw badRequest(`${name} must be an integer from ${min} to ${max}`);
    return Number(v);
  };
  const timeout = int('timeout', Math.min(config.DOCKYARD_EXECUTION_DEFAULT_TIMEOUT, config.DOCKYARD_EXECUTION_MAX_TIMEOUT), 1, config.DOCKYARD_EXECUTION_MAX_TIMEOUT);
  const retries = int('retries', 0, 0, config.DOCKYARD_EXECUTION_MAX_RETRIES);

  let memory = config.DOCKYARD_EXECUTION_DEFAULT_MEMORY;
  const mem = str(form, 'memory');
  if (mem) {
    if (!/^[0-9]+[bkmgBKMG]?$/.test(mem)) throw badRequest('memory must be a size such as 512m');
    memory = parseSize(mem);
    if (memory < MIN_MEMORY || memory > config.DOCKYARD_EXECUTION_MAX_MEMORY) {
      throw badRequest(`memory must be from ${MIN_MEMORY} to ${config.DOCKYARD_EXECUTION_MAX_MEMORY} bytes`);
    }
  }
  let cpus = config.DOCKYARD_EXECUTION_DEFAULT_CPUS;
  const c = str(form, 'cpus');
  if (c) {
    cpus = Number(c);
    if (!Number.isFinite(cpus) || cpus <= 0 || cpus > config.DOCKYARD_EXECUTION_MAX_CPUS) throw badRequest(`cpus must be a number above 0 and at most ${config.DOCKYARD_EXECUTION_MAX_CPUS}`);
  }
  const rawEnv = form.env === undefined ? [] : ([] as unknown[]).concat(form.env);
  const env = rawEnv.map(String);
  for (const e of env) if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e)) throw badRequest(`env entries must be KEY=VALUE (got ${JSON.stringify(e.slice(0, 40))})`);
  let network = false;
  const n = last(form.network);
  if (n !== undefined && n !== '') {
    if (typeof n === 'boolean') network = n;
    else if (/^(true|1|yes|on)$/i.test(String(n))) network = true;
    else if (/^(false|0|no|off)$/i.test(String(n))) network = false;
    else throw badRequest('network must be true or false');
  }
  return { command, imageId, timeout, memory, nanoCpus: Math.round(cpus * 1e9), env, network, retries };
}
