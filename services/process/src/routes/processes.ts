import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { MultipartFile, MultipartValue } from '@fastify/multipart';
import { HttpError, badRequest, conflict, hasControlCharacter, notFound, routeSchema, unauthorized, type Identity, type OpenApiDocument } from '@dockyard/kit';
import { statusView, visibleTo, type Processes, type ProcessKind } from '../domain/processes.js';
import { inspectZip, readEntries, type ZipLimits } from '../domain/zip.js';
import { parseRee, REE_FILE } from '../domain/ree.js';
import { parseSbom } from '../domain/sbom.js';

interface Deps {
  doc: OpenApiDocument;
  processes: Processes;
  limits: ZipLimits & { maxUploadBytes: number };
  tmpDir: string;
}

const SAFE_PATH = /^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._/-]{1,255}$/;

function caller(request: FastifyRequest): Identity & { id: string } {
  if (!request.identity?.id) throw unauthorized('Authentication required');
  return request.identity as Identity & { id: string };
}

interface Upload {
  file: string;
  tag: string | null;
  dockerfile: string;
}

/** Reads the multipart form: the zip to a staging file (size-limited), the text fields checked. */
async function readForm(request: FastifyRequest, staging: string, fields: Set<string>, maxBytes: number): Promise<Upload> {
  if (!request.isMultipart()) throw badRequest('The request must be multipart/form-data with a file field');
  const form: Upload = { file: '', tag: null, dockerfile: 'Dockerfile' };
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        const file = part as MultipartFile;
        if (file.fieldname !== 'file') {
          file.file.resume();
          throw badRequest(`Field ${file.fieldname} not supported (the zip goes in the file field)`);
        }
        if (form.file) {
          file.file.resume();
          throw badRequest('file: only one file may be uploaded');
        }
        form.file = path.join(staging, 'upload.zip');
        await pipeline(file.file, createWriteStream(form.file));
        if (file.file.truncated) throw new HttpError(413, `file: the upload is larger than the limit of ${maxBytes} bytes`);
      } else {
        const field = part as MultipartValue<unknown>;
        if (!fields.has(field.fieldname)) throw badRequest(`Field ${field.fieldname} not supported`);
        const value = String(field.value ?? '');
        if (field.fieldname === 'tag') {
          if (value.length > 255) throw badRequest('tag: at most 255 characters');
          // NUL cannot be stored (PostgreSQL text): a 500 after the upload was kept, before this check.
          if (hasControlCharacter(value)) throw badRequest('tag: must not contain control characters');
          form.tag = value || null;
        } else if (field.fieldname === 'dockerfile') {
          if (!SAFE_PATH.test(value)) throw badRequest(`dockerfile: "${value}" must be a relative path inside the archive`);
          form.dockerfile = value;
        }
      }
    }
  } catch (err) {
    // busboy's own errors (no boundary, a truncated or malformed body) are the client's: 400, not 500.
    if (!(err instanceof HttpError) && /^Multipart: |Unexpected end of (form|multipart)|Malformed part header/.test((err as Error).message)) throw badRequest(`Malformed multipart body: ${(err as Error).message}`);
    throw err;
  }
  if (!form.file) throw badRequest('file: required (the zip file)');
  return form;
}

/** Processes: define/build calls, status, log, output, listing. */
export const processRoutes: FastifyPluginAsync<Deps> = async (app, { doc, processes, limits, tmpDir }) => {
  await mkdir(tmpDir, { recursive: true });

  const start = (kind: ProcessKind, fields: string[]) => async (request: FastifyRequest) => {
    const who = caller(request);
    const staging = await mkdtemp(path.join(tmpDir, 'upload-'));
    try {
      const form = await readForm(request, staging, new Set(fields), limits.maxUploadBytes);
      const entries = await inspectZip(form.file, limits);
      const names = new Set(entries.filter((e) => !e.directory).map((e) => e.name));
      if (kind === 'recording-define') {
        if (!names.has(form.dockerfile)) throw badRequest(`file: the archive has no ${form.dockerfile}`);
      } else if (kind === 'recording-build') {
        const ree = parseRee((await readEntries(form.file, (n) => n === REE_FILE)).get(REE_FILE));
        if (!names.has(ree.dockerfile)) throw badRequest(`file: the defined REE has no ${ree.dockerfile}`);
        form.dockerfile = ree.dockerfile;
      } else {
        const jsons = await readEntries(form.file, (n) => /\.json$/i.test(n) && n !== REE_FILE);
        const found = [...jsons.values()].some((b) => {
          try {
            return parseSbom(JSON.parse(b.toString('utf8'))) !== null;
          } catch {
            return false;
          }
        });
        if (!found) throw badRequest('file: no CycloneDX or SPDX JSON SBOM found in the archive');
      }
      const uuid = randomUUID();
      const stored = await app.blobs.put(`inputs/${uuid}.zip`, createReadStream(form.file));
      const p = await processes.create({ uuid, tag: form.tag, kind, owner: who, dockerfile: form.dockerfile, inputKey: stored.key, inputSha: stored.sha256 });
      return { uuid: p.uuid, tag: p.tag, status_endpoint: `/api/process/status/${p.uuid}` };
    } finally {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    }
  };

  app.route({ ...routeSchema(doc, 'createRecordingDefinition'), handler: start('recording-define', ['tag', 'dockerfile']) });
  app.route({ ...routeSchema(doc, 'buildRecording'), handler: start('recording-build', ['tag']) });
  app.route({ ...routeSchema(doc, 'createReplay'), handler: start('recording-build', ['tag']) });
  app.route({ ...routeSchema(doc, 'defineSbom'), handler: start('sbom-define', ['tag']) });

  /** The process if the caller may see it; another user's is "not found", like an unknown one. */
  const visible = async (request: FastifyRequest) => {
    const who = caller(request);
    const { uuid } = request.params as { uuid: string };
    const p = await processes.get(uuid);
    if (!p || !visibleTo(p, who)) throw notFound(`Process ${uuid} not found`);
    return p;
  };

  app.route({
    ...routeSchema(doc, 'listProcesses'),
    handler: async (request) => {
      const who = caller(request);
      const { tag } = request.query as { tag?: string };
      const rows = await processes.prisma.process.findMany({ where: { ownerId: who.id, ...(tag !== undefined ? { tag } : {}) }, orderBy: { createdAt: 'desc' }, take: 1000 });
      return rows.map(statusView);
    },
  });
  app.route({ ...routeSchema(doc, 'getProcessStatus'), handler: async (request) => statusView(await visible(request)) });

  const log = async (request: FastifyRequest, reply: FastifyReply) => {
    const p = await visible(request);
    return reply.type('text/plain; charset=utf-8').send(await processes.logText(p.uuid));
  };
  app.route({ ...routeSchema(doc, 'getProcessLog'), handler: log });
  app.route({ ...routeSchema(doc, 'downloadProcessLog'), handler: log });

  app.route({
    ...routeSchema(doc, 'downloadProcessOutput'),
    handler: async (request, reply) => {
      const p = await visible(request);
      if (p.status !== 'processed' || !p.outputKey) {
        throw conflict(p.status === 'failed' ? `Process ${p.uuid} failed; it has no output (${p.reason ?? 'no reason recorded'})` : `Process ${p.uuid} is ${p.status}; its output is not available yet`);
      }
      const info = await app.blobs.stat(p.outputKey);
      const body = await app.blobs.get(p.outputKey);
      if (info) reply.header('content-length', info.size);
      return reply.type('application/zip').header('content-disposition', `attachment; filename="${p.uuid}.zip"`).send(body);
    },
  });
};
