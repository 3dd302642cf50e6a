/** Kabuto pipelines and jobs: pipeline create|submit|list|get|delete, job add|status|logs|result|kill|delete. */
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { ctxOf, download, fileBlob, intId, outputPath, upload, waitUntil, type Ctx, type Io } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { table } from '../ui.js';

interface Job {
  id: number;
  command: string;
  state: string;
  reason?: string | null;
  used_cpu?: number;
  used_memory?: number;
  image?: { id: unknown };
  pipeline?: { id: number };
}
interface Pipeline {
  id: number;
  name: string;
  creation_date?: string;
  jobs: { id: number }[];
}

const TERMINAL = ['done', 'failed', 'killed'];
const collect = (v: string, prev: string[] = []) => [...prev, v];

async function getJob(ctx: Ctx, pipeline: string, job: string): Promise<Job> {
  const body = await ctx.client().json<Record<string, Job>>('GET', `/pipeline/${pipeline}/job/${job}`);
  return body[job] ?? Object.values(body)[0];
}

async function getPipeline(ctx: Ctx, id: string): Promise<Pipeline> {
  const body = await ctx.client().json<Record<string, Pipeline>>('GET', `/pipeline/${id}`);
  return body[id] ?? Object.values(body)[0];
}

function failIfBad(jobs: Job[]): void {
  const bad = jobs.filter((j) => j.state === 'failed' || j.state === 'killed');
  if (bad.length) throw new CliError(bad.map((j) => `job ${j.id} ${j.state}${j.reason ? `: ${j.reason}` : ''}`).join('; '), EXIT.failed, undefined, bad);
}

/** Reads a Server-Sent Events body, calling `onEvent(event, data)`; resolves when the stream ends. */
async function readSse(body: ReadableStream<Uint8Array>, onEvent: (event: string, data: string) => boolean | void): Promise<void> {
  let buf = '';
  for await (const chunk of Readable.fromWeb(body as import('node:stream/web').ReadableStream)) {
    buf += Buffer.from(chunk as Buffer).toString('utf8');
    let i: number;
    while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length && onEvent(event, data.join('\n')) === false) return;
    }
  }
}

export function executionCommands(program: Command, io: Io): void {
  const pipeline = program.command('pipeline').description('Kabuto pipelines');

  pipeline
    .command('create <name>')
    .description('Create a pipeline; prints its id')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json<{ id: number }>('POST', '/pipeline', { json: { name } });
      ctx.ui.result(body, String(body.id));
    });

  pipeline
    .command('submit <pipeline_id>')
    .description("Run a pipeline's jobs")
    .option('-f, --follow', 'wait until every job ended (exit 5 if one failed or was killed)')
    .action(async (id: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(id, 'pipeline id');
      const states = await ctx.client().json<Record<string, string>>('POST', `/pipeline/${id}/submit`);
      if (!opts.follow) return ctx.ui.result(states, () => table([['JOB', 'STATE'], ...Object.entries(states)]));
      const jobs = await waitUntil(
        ctx,
        `pipeline ${id}`,
        () => Promise.all(Object.keys(states).map((j) => getJob(ctx, id, j))),
        (js) => js.map((j) => `${j.id}:${j.state}`).join(' '),
        (js) => js.every((j) => TERMINAL.includes(j.state)),
        (js) => js.every((j) => j.state === 'done'),
      );
      ctx.ui.result(jobs, () => table([['JOB', 'STATE', 'REASON'], ...jobs.map((j) => [j.id, j.state, j.reason])]));
      failIfBad(jobs);
    });

  pipeline
    .command('list')
    .description('Your pipelines')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json<Record<string, Pipeline>>('GET', '/pipeline');
      const rows = Object.values(body ?? {});
      ctx.ui.result(body, () => (rows.length ? table([['ID', 'NAME', 'JOBS', 'CREATED'], ...rows.map((p) => [p.id, p.name, p.jobs?.map((j) => j.id).join(','), p.creation_date])]) : ['(none)']));
    });

  pipeline
    .command('get <pipeline_id>')
    .description('Show a pipeline and the state of its jobs')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(id, 'pipeline id');
      const p = await getPipeline(ctx, id);
      const jobs = await Promise.all((p.jobs ?? []).map((j) => getJob(ctx, id, String(j.id))));
      ctx.ui.result({ ...p, jobs }, [`pipeline ${p.id} ${p.name}`, ...(jobs.length ? table([['JOB', 'STATE', 'COMMAND'], ...jobs.map((j) => [j.id, j.state, j.command])]) : ['(no jobs)'])]);
    });

  pipeline
    .command('delete <pipeline_id>')
    .description('Delete a pipeline')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json('DELETE', `/pipeline/${intId(id, 'pipeline id')}`);
      ctx.ui.result(body ?? { deleted: Number(id) }, `pipeline ${id} deleted`);
    });

  const job = program.command('job').description('Kabuto jobs');

  job
    .command('add <pipeline_id>')
    .description('Add a job to a pipeline; prints its id')
    .requiredOption('-i, --image <image>', 'a Kabuto image id, or an allowed image reference (dockyard/busybox:latest)')
    .requiredOption('-c, --command <command>', 'the shell command (files in /inbox, results to /outbox)')
    .option('-a, --attach <file>', 'a file for /inbox (repeatable; NAME=PATH renames it)', collect)
    .option('--timeout <seconds>', 'time limit')
    .option('--memory <size>', 'memory limit, e.g. 512m')
    .option('--cpus <n>', 'CPU limit')
    .option('-e, --env <KEY=VALUE>', 'an environment variable (repeatable)', collect)
    .option('--network', 'give the job network access')
    .option('--retries <n>', 'retries of a failed job')
    .action(async (id: string, opts: { image: string; command: string; attach?: string[]; timeout?: string; memory?: string; cpus?: string; env?: string[]; network?: boolean; retries?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(id, 'pipeline id');
      const form = new FormData();
      form.set('command', opts.command);
      form.set('image_id', opts.image);
      if (opts.timeout) form.set('timeout', opts.timeout);
      if (opts.memory) form.set('memory', opts.memory);
      if (opts.cpus) form.set('cpus', opts.cpus);
      if (opts.retries) form.set('retries', opts.retries);
      if (opts.network) form.set('network', 'true');
      for (const e of opts.env ?? []) form.append('env', e);
      let total = 0;
      for (const a of opts.attach ?? []) {
        const eq = a.indexOf('=');
        const [name, file] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [undefined, a];
        const f = await fileBlob(file);
        total += f.size;
        form.append('attachments', f.blob, name ?? f.name);
      }
      const body = await upload<{ id: number }>(ctx, `/pipeline/${id}/job`, form, total);
      ctx.ui.result(body, String(body.id));
    });

  job
    .command('status <pipeline_id> <job_id>')
    .description('The state of a job (with resource usage)')
    .option('-f, --follow', 'wait until it ends (exit 5 if failed or killed)')
    .action(async (p: string, j: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(p, 'pipeline id');
      intId(j, 'job id');
      const jb = opts.follow
        ? await waitUntil(ctx, `job ${j}`, () => getJob(ctx, p, j), (v) => v.state, (v) => TERMINAL.includes(v.state), (v) => v.state === 'done')
        : await getJob(ctx, p, j);
      ctx.ui.result(jb, [`job ${jb.id}: ${jb.state}${jb.reason ? ` — ${jb.reason}` : ''}`, ...(jb.used_memory !== undefined && jb.used_memory !== null ? [`cpu ${jb.used_cpu ?? 0} s, memory ${jb.used_memory} B`] : [])]);
      failIfBad([jb]);
    });

  job
    .command('logs <job_id>')
    .description("A job's log")
    .option('-f, --follow', 'follow it live until the job ends (exit 5 if it failed or was killed)')
    .action(async (j: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(j, 'job id');
      if (!opts.follow) {
        const lines = await ctx.client().json<{ id: number; logline: string }[]>('GET', `/execution/${j}/logs`);
        return ctx.ui.result(lines, () => lines.map((l) => l.logline));
      }
      const res = await ctx.client().request('GET', `/execution/${j}/logs/stream`, { headers: { accept: 'text/event-stream' } });
      const lines: { id: number; logline: string }[] = [];
      let end: { id: number; state: string } | undefined;
      await readSse(res.body!, (event, data) => {
        if (event === 'end') {
          end = JSON.parse(data);
          return false;
        }
        if (event === 'log') {
          const line = JSON.parse(data) as { id: number; logline: string };
          if (ctx.ui.json) lines.push(line);
          else ctx.ui.write(`${line.logline}\n`);
        }
      });
      if (ctx.ui.json) ctx.ui.result({ lines, state: end?.state ?? null });
      if (end && (end.state === 'failed' || end.state === 'killed')) throw new CliError(`job ${j} ${end.state}`, EXIT.failed, undefined, end);
    });

  job
    .command('result <pipeline_id> <job_id>')
    .description("Download a job's results (/outbox) as a zip")
    .option('-o, --output <file>', 'where to write it (default results-<job>.zip)')
    .action(async (p: string, j: string, opts: { output?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(p, 'pipeline id');
      intId(j, 'job id');
      const file = outputPath(opts.output, `results-${j}.zip`);
      const r = await download(ctx, `/pipeline/${p}/job/${j}?result`, file, 'results');
      ctx.ui.result(r, `${r.file} (${r.bytes} bytes)`);
    });

  job
    .command('kill <pipeline_id> <job_id>')
    .description('Kill a queued or running job')
    .action(async (p: string, j: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json('POST', `/pipeline/${intId(p, 'pipeline id')}/job/${intId(j, 'job id')}/kill`);
      ctx.ui.result(body ?? { killed: Number(j) }, `job ${j}: kill requested`);
    });

  job
    .command('delete <pipeline_id> <job_id>')
    .description('Delete a job')
    .action(async (p: string, j: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json('DELETE', `/pipeline/${intId(p, 'pipeline id')}/job/${intId(j, 'job id')}`);
      ctx.ui.result(body ?? { deleted: Number(j) }, `job ${j} deleted`);
    });
}
