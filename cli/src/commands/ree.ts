/** REE: ree define|build|status|download|log|list, and the base images (images list|download). */
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import yazl from 'yazl';
import { ctxOf, download, fileBlob, outputPath, upload, waitUntil, type Ctx, type Io } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { table } from '../ui.js';

interface Started {
  uuid: string;
  tag: string | null;
  status_endpoint: string;
}
interface Status {
  uuid: string;
  tag: string | null;
  status: string;
  reason?: string | null;
  download_endpoint?: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function uuid(v: string): string {
  if (!UUID.test(v)) throw new CliError(`Not a process uuid: ${v}`, EXIT.usage);
  return v;
}

/** A directory zipped to a temporary file (regular files only; symbolic links are refused by the server anyway, so skipped). */
async function zipDirectory(dir: string): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'dockyard-cli-'));
  const file = path.join(tmp, `${path.basename(path.resolve(dir)) || 'project'}.zip`);
  const zip = new yazl.ZipFile();
  const walk = async (rel: string) => {
    for (const entry of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (entry.name === '.git') continue;
        await walk(r);
      } else if (entry.isFile()) zip.addFile(path.join(dir, r), r);
    }
  };
  await walk('');
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(file));
  return { file, cleanup: () => rm(tmp, { recursive: true, force: true }) };
}

/** A zip for upload: the file itself, or a directory (or a single JSON document) zipped. */
async function asZip(input: string): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const st = await stat(input).catch(() => {
    throw new CliError(`No such file or directory: ${input}`, EXIT.usage);
  });
  if (st.isDirectory()) return zipDirectory(input);
  if (input.endsWith('.json')) {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'dockyard-cli-'));
    const file = path.join(tmp, 'sbom.zip');
    const zip = new yazl.ZipFile();
    zip.addFile(input, path.basename(input));
    zip.end();
    await pipeline(zip.outputStream, createWriteStream(file));
    return { file, cleanup: () => rm(tmp, { recursive: true, force: true }) };
  }
  return { file: input, cleanup: async () => undefined };
}

async function startProcess(ctx: Ctx, apiPath: string, input: string, fields: Record<string, string | undefined>): Promise<Started> {
  const zip = await asZip(input);
  try {
    const f = await fileBlob(zip.file);
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) if (v) form.set(k, v);
    form.set('file', f.blob, f.name);
    return await upload<Started>(ctx, apiPath, form, f.size);
  } finally {
    await zip.cleanup();
  }
}

const waitProcess = (ctx: Ctx, id: string) =>
  waitUntil(
    ctx,
    `process ${id}`,
    () => ctx.client().json<Status>('GET', `/api/process/status/${id}`),
    (s) => s.status,
    (s) => s.status === 'processed' || s.status === 'failed',
    (s) => s.status === 'processed',
  );

function report(ctx: Ctx, s: Status): void {
  ctx.ui.result(s, [`process ${s.uuid}${s.tag ? ` (${s.tag})` : ''}: ${s.status}${s.reason ? ` — ${s.reason}` : ''}`]);
  if (s.status === 'failed') throw new CliError(`Process ${s.uuid} failed${s.reason ? `: ${s.reason}` : ''}`, EXIT.failed, undefined, s);
}

async function started(ctx: Ctx, s: Started, follow?: boolean): Promise<void> {
  if (!follow) return ctx.ui.result(s, `process ${s.uuid} queued (dockyard ree status ${s.uuid} -f)`);
  ctx.ui.note(`process ${s.uuid} queued`);
  report(ctx, await waitProcess(ctx, s.uuid));
}

export function reeCommands(program: Command, io: Io): void {
  const ree = program.command('ree').description('Reproducible execution environments (REE)');

  ree
    .command('define <project>')
    .description('Define an REE from a project (a directory or a .zip with a Dockerfile); --sbom: from an SBOM (a .json, or a zip holding one)')
    .option('-t, --tag <tag>', 'a tag for the process')
    .option('--dockerfile <name>', 'the Dockerfile in the project')
    .option('--sbom', 'define from a CycloneDX or SPDX SBOM instead of recording a build')
    .option('-f, --follow', 'wait until processed (exit 5 if it fails)')
    .action(async (project: string, opts: { tag?: string; dockerfile?: string; sbom?: boolean; follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const s = await startProcess(ctx, opts.sbom ? '/api/sbom/define' : '/api/recording/create', project, { tag: opts.tag, dockerfile: opts.sbom ? undefined : opts.dockerfile });
      await started(ctx, s, opts.follow);
    });

  ree
    .command('build <defined>')
    .description('Build a defined REE (the zip `ree download` of a define gave) and verify it')
    .option('-t, --tag <tag>', 'a tag for the process')
    .option('-f, --follow', 'wait until processed (exit 5 if it fails)')
    .action(async (defined: string, opts: { tag?: string; follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      await started(ctx, await startProcess(ctx, '/api/recording/build', defined, { tag: opts.tag }), opts.follow);
    });

  ree
    .command('status <uuid>')
    .description('The status of a process')
    .option('-f, --follow', 'wait until processed (exit 5 if it fails)')
    .action(async (id: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      uuid(id);
      report(ctx, opts.follow ? await waitProcess(ctx, id) : await ctx.client().json<Status>('GET', `/api/process/status/${id}`));
    });

  ree
    .command('download <uuid>')
    .description("Download a processed process's output (a zip)")
    .option('-o, --output <file>', 'where to write it (default <uuid>.zip)')
    .action(async (id: string, opts: { output?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const r = await download(ctx, `/api/process/download/${uuid(id)}`, outputPath(opts.output, `${id}.zip`), 'output');
      ctx.ui.result(r, `${r.file} (${r.bytes} bytes)`);
    });

  ree
    .command('log <uuid>')
    .description('The log of a process')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const text = await (await ctx.client().request('GET', `/api/process/log/${uuid(id)}`)).text();
      ctx.ui.result({ log: text }, text);
    });

  ree
    .command('list')
    .description('Your processes')
    .option('-t, --tag <tag>', 'only this tag')
    .action(async (opts: { tag?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json<Status[] | { items?: Status[] }>('GET', '/api/process', { query: { tag: opts.tag } });
      const rows = Array.isArray(body) ? body : (body?.items ?? []);
      ctx.ui.result(body, () => (rows.length ? table([['UUID', 'TAG', 'STATUS'], ...rows.map((s) => [s.uuid, s.tag, s.status])]) : ['(none)']));
    });

  const images = program.command('images').description('REE base images');

  images
    .command('list')
    .description('The base images an REE may start from')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const list = await ctx.client().json<{ name: string; download_endpoint: string }[]>('GET', '/api/image/list');
      ctx.ui.result(list, () => list.map((i) => i.name));
    });

  images
    .command('download <name>')
    .description('Download a base image (a `docker save` tar, for `docker load`)')
    .option('-o, --output <file>', 'where to write it (default <name>.tar)')
    .action(async (name: string, opts: { output?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new CliError(`Not a base image name: ${name}`, EXIT.usage);
      const r = await download(ctx, `/api/image/download/${name}`, outputPath(opts.output, `${name}.tar`), name);
      ctx.ui.result(r, `${r.file} (${r.bytes} bytes)`);
    });
}
