/** Cachito: cache request|status|list|download|manifest|sbom|logs. */
import type { Command } from 'commander';
import { ctxOf, download, intId, outputPath, waitUntil, type Ctx, type Io } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { table } from '../ui.js';

interface CacheRequest {
  id: number;
  repo: string;
  ref: string;
  state: string;
  state_reason?: string;
  pkg_managers?: string[];
  packages?: { name: string; type: string; version: string }[];
  dependencies?: { name: string; type: string; version: string }[];
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

function report(ctx: Ctx, r: CacheRequest): void {
  ctx.ui.result(r, [
    `request ${r.id}: ${r.state}${r.state_reason ? ` — ${r.state_reason}` : ''}`,
    `${r.repo} @ ${r.ref}`,
    ...(r.packages ? [`packages: ${r.packages.length}, dependencies: ${r.dependencies?.length ?? 0}`] : []),
  ]);
  if (r.state === 'failed') throw new CliError(`Request ${r.id} failed${r.state_reason ? `: ${r.state_reason}` : ''}`, EXIT.failed, undefined, r);
}

const waitRequest = (ctx: Ctx, id: string) =>
  waitUntil(
    ctx,
    `request ${id}`,
    () => ctx.client().json<CacheRequest>('GET', `/api/v1/requests/${id}`),
    (r) => r.state,
    (r) => r.state !== 'in_progress',
    (r) => r.state === 'complete',
  );

export function cacheCommands(program: Command, io: Io): void {
  const cache = program.command('cache').description('Cachito: sources with their dependencies, as bundles');

  cache
    .command('request')
    .description('Ask for a repository at a commit, with its dependencies')
    .requiredOption('--repo <url>', 'the git repository')
    .requiredOption('--ref <sha>', 'the commit (40 hex)')
    .option('-p, --pkg-manager <name>', 'gomod, npm, pip, yarn, git-submodule (repeatable; none given: the server default)', collect)
    .option('--flag <flag>', 'a Cachito flag (repeatable)', collect)
    .option('--package-path <pm=path>', 'a package path, e.g. npm=client (repeatable)', collect)
    .option('-f, --follow', 'wait until it is complete (exit 5 if it fails)')
    .action(async (opts: { repo: string; ref: string; pkgManager?: string[]; flag?: string[]; packagePath?: string[]; follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      if (!/^[0-9a-f]{40}$/.test(opts.ref)) throw new CliError('--ref must be a full commit id (40 hex characters)', EXIT.usage);
      const body: Record<string, unknown> = { repo: opts.repo, ref: opts.ref };
      if (opts.pkgManager) body.pkg_managers = opts.pkgManager.flatMap((p) => p.split(',')).filter(Boolean);
      if (opts.flag) body.flags = opts.flag;
      if (opts.packagePath) {
        const packages: Record<string, { path: string }[]> = {};
        for (const pp of opts.packagePath) {
          const i = pp.indexOf('=');
          if (i < 1) throw new CliError(`--package-path wants PM=PATH, got "${pp}"`, EXIT.usage);
          (packages[pp.slice(0, i)] ??= []).push({ path: pp.slice(i + 1) });
        }
        body.packages = packages;
      }
      const created = await ctx.client().json<CacheRequest>('POST', '/api/v1/requests', { json: body });
      if (!opts.follow) return report(ctx, created);
      ctx.ui.note(`request ${created.id} created`);
      report(ctx, await waitRequest(ctx, String(created.id)));
    });

  cache
    .command('status <request_id>')
    .description('The state of a request, its packages and dependencies')
    .option('-f, --follow', 'wait until it is no longer in progress (exit 5 if it fails)')
    .action(async (id: string, opts: { follow?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(id, 'request id');
      report(ctx, opts.follow ? await waitRequest(ctx, id) : await ctx.client().json<CacheRequest>('GET', `/api/v1/requests/${id}`));
    });

  cache
    .command('list')
    .description('Requests')
    .option('--state <state>', 'in_progress, complete, failed or stale')
    .option('--repo <url>', 'only this repository')
    .action(async (opts: { state?: string; repo?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json<{ items: CacheRequest[] }>('GET', '/api/v1/requests', { query: { state: opts.state, repo: opts.repo, per_page: 100 } });
      const items = body.items ?? [];
      ctx.ui.result(body, () => (items.length ? table([['ID', 'STATE', 'REPO', 'REF'], ...items.map((r) => [r.id, r.state, r.repo, r.ref.slice(0, 12)])]) : ['(none)']));
    });

  cache
    .command('download <request_id>')
    .description("Download a request's bundle (app/ + deps/, a .tar.gz)")
    .option('-o, --output <file>', 'where to write it (default cachito-<id>.tar.gz)')
    .action(async (id: string, opts: { output?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      intId(id, 'request id');
      const r = await download(ctx, `/api/v1/requests/${id}/download`, outputPath(opts.output, `cachito-${id}.tar.gz`), 'bundle');
      ctx.ui.result(r, `${r.file} (${r.bytes} bytes)`);
    });

  for (const [name, path, what] of [
    ['manifest', 'content-manifest', 'The content manifest (ICM) of a request'],
    ['sbom', 'sbom', 'The SBOM (CycloneDX) of a request'],
    ['env', 'environment-variables', 'The environment variables of a request'],
    ['config-files', 'configuration-files', 'The configuration files of a request'],
  ] as const) {
    cache
      .command(`${name} <request_id>`)
      .description(what)
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const ctx = ctxOf(cmd, io);
        ctx.ui.result(await ctx.client().json('GET', `/api/v1/requests/${intId(id, 'request id')}/${path}`));
      });
  }

  cache
    .command('logs <request_id>')
    .description('The log of a request')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const text = await (await ctx.client().request('GET', `/api/v1/requests/${intId(id, 'request id')}/logs`)).text();
      ctx.ui.result({ log: text }, text);
    });
}
