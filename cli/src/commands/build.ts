/** ECR builds (build start|status|logs|abort) and Kabuto images (image build|list|get|status). */
import { Readable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { appRef, ctxOf, fileBlob, upload, waitUntil, type Ctx, type Io } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { table } from '../ui.js';

interface EcrBuild {
  number?: number;
  building: boolean;
  result: string | null;
  image?: string;
  digest?: string;
  platforms?: { platform: string; result: string | null; error?: string | null }[];
}

interface ImageBuild {
  state: string;
  id?: number | string;
  error?: string;
  output?: string[];
}

async function followBuild(ctx: Ctx, ref: string, path: string): Promise<void> {
  const build = await waitUntil(
    ctx,
    `build ${ref}`,
    () => ctx.client().json<EcrBuild>('GET', `/builds/${path}`),
    (b) => (b.building ? 'building' : (b.result ?? 'queued')),
    (b) => !b.building && b.result !== null && b.result !== undefined,
    (b) => b.result === 'SUCCESS',
  );
  reportBuild(ctx, ref, build);
}

function reportBuild(ctx: Ctx, ref: string, b: EcrBuild): void {
  ctx.ui.result(b, [
    `${ref} build #${b.number ?? '?'}: ${b.building ? 'building' : (b.result ?? 'queued')}`,
    ...(b.image ? [`image:  ${b.image}`] : []),
    ...(b.digest ? [`digest: ${b.digest}`] : []),
    ...(b.platforms ?? []).filter((p) => p.error).map((p) => `${p.platform}: ${p.error}`),
  ]);
  if (!b.building && b.result && b.result !== 'SUCCESS') throw new CliError(`Build of ${ref} ended ${b.result}`, EXIT.failed, undefined, b);
}

export function buildCommands(program: Command, io: Io): void {
  const build = program.command('build').description('ECR builds of an app version');

  build
    .command('start <app>')
    .description('Build NAMESPACE/REPOSITORY/VERSION')
    .option('-f, --follow', 'wait for the result (exit 5 unless SUCCESS)')
    .action(async (ref: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const { path } = appRef(ref);
      const queued = await ctx.client().json<{ build_number: number }>('POST', `/builds/${path}`);
      if (!opts.follow) return ctx.ui.result(queued, `${ref}: build #${queued.build_number} queued`);
      ctx.ui.note(`${ref}: build #${queued.build_number} queued`);
      await followBuild(ctx, ref, path);
    });

  build
    .command('status <app>')
    .description('The latest build of NAMESPACE/REPOSITORY/VERSION')
    .option('-f, --follow', 'wait until it ends (exit 5 unless SUCCESS)')
    .action(async (ref: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const { path } = appRef(ref);
      if (opts.follow) return followBuild(ctx, ref, path);
      reportBuild(ctx, ref, await ctx.client().json<EcrBuild>('GET', `/builds/${path}`));
    });

  build
    .command('logs <app>')
    .description('The log of the latest build of NAMESPACE/REPOSITORY/VERSION')
    .option('-f, --follow', 'follow the log until the build ends')
    .action(async (ref: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const res = await ctx.client().request('GET', `/builds/${appRef(ref).path}/logs`, { query: { follow: opts.follow ? 'true' : undefined } });
      let log = '';
      for await (const chunk of Readable.fromWeb(res.body as import('node:stream/web').ReadableStream)) {
        const text = Buffer.from(chunk as Buffer).toString('utf8');
        if (ctx.ui.json) log += text;
        else ctx.ui.write(text);
      }
      if (ctx.ui.json) ctx.ui.result({ log });
    });

  build
    .command('abort <app>')
    .description('Abort the running build of NAMESPACE/REPOSITORY/VERSION')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json('DELETE', `/builds/${appRef(ref).path}`);
      ctx.ui.result(body ?? { aborted: ref }, `${ref}: abort requested`);
    });

  const image = program.command('image').description('Kabuto images built from a Dockerfile');

  const waitImage = async (ctx: Ctx, buildId: string) => {
    const b = await waitUntil(
      ctx,
      `image build ${buildId}`,
      () => ctx.client().json<ImageBuild>('GET', `/image/build/${encodeURIComponent(buildId)}`),
      (v) => v.state,
      (v) => v.state !== 'PENDING',
      (v) => v.state === 'SUCCESS',
    );
    return b;
  };
  const reportImage = (ctx: Ctx, buildId: string, b: ImageBuild) => {
    ctx.ui.result({ build_id: buildId, ...b }, b.state === 'SUCCESS' ? `image ${b.id} built (build ${buildId})` : [`image build ${buildId}: ${b.state}${b.error ? ` — ${b.error}` : ''}`, ...(b.state === 'FAILED' ? (b.output ?? []).slice(-20) : [])]);
    if (b.state !== 'SUCCESS' && b.state !== 'PENDING') throw new CliError(`Image build ${buildId} ended ${b.state}${b.error ? `: ${b.error}` : ''}`, EXIT.failed, undefined, b);
  };

  image
    .command('build [attachments...]')
    .description('Build an image from a Dockerfile (+ files it COPYs) and wait for it')
    .requiredOption('-n, --name <name>', 'the image name')
    .option('-f, --file <Dockerfile>', 'the Dockerfile', 'Dockerfile')
    .option('--repo-url <url>', 'build from a git repository instead of a Dockerfile')
    .option('--no-cache', 'do not use the layer cache')
    .option('--no-wait', 'return once queued')
    .action(async (attachments: string[], opts: { name: string; file: string; repoUrl?: string; cache: boolean; wait: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const form = new FormData();
      form.set('name', opts.name);
      if (opts.repoUrl) form.set('repo_url', opts.repoUrl);
      else {
        const dockerfile = await readFile(opts.file, 'utf8').catch(() => {
          throw new CliError(`Cannot read the Dockerfile ${opts.file}`, EXIT.usage);
        });
        form.set('dockerfile', dockerfile);
      }
      if (!opts.cache) form.set('nocache', 'true');
      let total = 0;
      for (const a of attachments) {
        const f = await fileBlob(a);
        total += f.size;
        form.append('attachments', f.blob, f.name);
      }
      const queued = await upload<{ build_id: string }>(ctx, '/image', form, total);
      if (!opts.wait) return ctx.ui.result(queued, `image build ${queued.build_id} queued`);
      reportImage(ctx, queued.build_id, await waitImage(ctx, queued.build_id));
    });

  image
    .command('status <build_id>')
    .description('The state of an image build')
    .option('-f, --follow', 'wait until it ends')
    .action(async (buildId: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const b = opts.follow ? await waitImage(ctx, buildId) : await ctx.client().json<ImageBuild>('GET', `/image/build/${encodeURIComponent(buildId)}`);
      reportImage(ctx, buildId, b);
    });

  image
    .command('list')
    .description('Your images')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json<Record<string, { id: number; name: string; creation_date?: string }>>('GET', '/image');
      const rows = Object.values(body ?? {});
      ctx.ui.result(body, () => (rows.length ? table([['ID', 'NAME', 'CREATED'], ...rows.map((r) => [r.id, r.name, r.creation_date])]) : ['(none)']));
    });

  image
    .command('get <image_id>')
    .description('Show an image')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      ctx.ui.result(await ctx.client().json('GET', `/image/${encodeURIComponent(id)}`));
    });
}
