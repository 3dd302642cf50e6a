/** ECR: apps submit|list|get|freeze|delete and perms get|grant|revoke. */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { appRef, ctxOf, resourceRef, type Io } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { table } from '../ui.js';

interface App {
  id?: string;
  namespace: string;
  name: string;
  version: string;
  owner?: string;
  frozen?: boolean;
  source?: { url?: string };
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

function appRows(apps: App[]): string[] {
  if (!apps.length) return ['(none)'];
  return table([['APP', 'OWNER', 'FROZEN'], ...apps.map((a) => [`${a.namespace}/${a.name}/${a.version}`, a.owner, a.frozen ?? false])]);
}

export function appsCommands(program: Command, io: Io): void {
  const apps = program.command('apps').description('ECR apps: submit, list, show, freeze, delete');

  apps
    .command('submit <app>')
    .description('Submit NAMESPACE/REPOSITORY/VERSION from an app document (-f) or a git source (--git)')
    .option('-f, --file <file>', 'the app document, YAML or JSON ("-" reads stdin)')
    .option('--git <url>', 'the source repository (instead of -f)')
    .option('--branch <branch>', 'with --git: the branch')
    .option('--tag <tag>', 'with --git: the tag')
    .option('--directory <dir>', 'with --git: the directory of the Dockerfile')
    .option('--dockerfile <file>', 'with --git: the Dockerfile name')
    .option('--arch <platform>', 'with --git: a platform to build (repeatable)', collect)
    .option('--build-arg <KEY=VALUE>', 'with --git: a build argument (repeatable)', collect)
    .option('--description <text>', 'with --git: the description')
    .option('--force', 'overwrite an existing (not frozen) version')
    .action(async (ref: string, opts: Record<string, string | string[] | boolean | undefined>, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const app = appRef(ref);
      let text: { body: string; type: string };
      if (opts.file && opts.git) throw new CliError('Use either -f or --git', EXIT.usage);
      if (opts.file) {
        const file = String(opts.file);
        let body: string;
        if (file === '-') {
          const chunks: Buffer[] = [];
          for await (const c of io.stdin) chunks.push(Buffer.from(c as Buffer));
          body = Buffer.concat(chunks).toString('utf8');
        } else {
          body = await readFile(file, 'utf8').catch(() => {
            throw new CliError(`Cannot read ${file}`, EXIT.usage);
          });
        }
        text = { body, type: /^\s*[{[]/.test(body) ? 'application/json' : 'application/yaml' };
      } else if (opts.git) {
        const buildArgs: Record<string, string> = {};
        for (const kv of (opts.buildArg as string[] | undefined) ?? []) {
          const i = kv.indexOf('=');
          if (i < 1) throw new CliError(`--build-arg wants KEY=VALUE, got "${kv}"`, EXIT.usage);
          buildArgs[kv.slice(0, i)] = kv.slice(i + 1);
        }
        const source: Record<string, unknown> = { url: opts.git };
        if (opts.branch) source.branch = opts.branch;
        if (opts.tag) source.tag = opts.tag;
        if (opts.directory) source.directory = opts.directory;
        if (opts.dockerfile) source.dockerfile = opts.dockerfile;
        if (opts.arch) source.architectures = opts.arch;
        if (Object.keys(buildArgs).length) source.build_args = buildArgs;
        text = { body: JSON.stringify({ ...(opts.description ? { description: opts.description } : {}), source }), type: 'application/json' };
      } else {
        throw new CliError('Give the app document with -f FILE, or its source with --git URL', EXIT.usage);
      }
      const spinner = ctx.ui.spinner(`Submitting ${ref} (the source is cloned)`);
      try {
        const created = await ctx.client().json<App>('POST', `/apps/${app.path}`, { text, query: { force: opts.force ? 'true' : undefined } });
        spinner.stop(true, `Submitted ${ref}`);
        ctx.ui.result(created, `${created.namespace}/${created.name}/${created.version} submitted (owner ${created.owner ?? '?'})`);
      } catch (err) {
        spinner.stop(false);
        throw err;
      }
    });

  apps
    .command('list [scope]')
    .description('List apps you may read: all, of a NAMESPACE, or the versions of NAMESPACE/REPOSITORY')
    .option('--limit <n>', 'page size', '100')
    .option('--public', 'only public apps')
    .option('--shared', 'only apps shared with you')
    .option('--owner <login>', "only this owner's apps")
    .action(async (scope: string | undefined, opts: { limit: string; public?: boolean; shared?: boolean; owner?: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const client = ctx.client();
      const base = scope ? `/apps/${resourceRef(scope)}` : '/apps';
      const all: App[] = [];
      let cont: string | undefined;
      // Follow ECR's `continue` pages to the end.
      for (let page = 0; page < 1000; page++) {
        const query = { limit: opts.limit, continue: cont, public: opts.public ? 'true' : undefined, shared: opts.shared ? 'true' : undefined, owner: opts.owner };
        const body = await client.json<App[] | { data: App[]; pagination?: { next?: string | null } }>('GET', base, { query });
        if (Array.isArray(body)) {
          all.push(...body);
          break;
        }
        all.push(...(body.data ?? []));
        const next = body.pagination?.next;
        cont = next ? (new URL(next, 'http://x').searchParams.get('continue') ?? undefined) : undefined;
        if (!cont) break;
      }
      ctx.ui.result(all, () => appRows(all));
    });

  apps
    .command('get <app>')
    .description('Show NAMESPACE/REPOSITORY/VERSION')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      ctx.ui.result(await ctx.client().json('GET', `/apps/${appRef(ref).path}`));
    });

  apps
    .command('freeze <app>')
    .description('Freeze NAMESPACE/REPOSITORY/VERSION (no more overwrites)')
    .option('--unfreeze', 'lift the freeze')
    .action(async (ref: string, opts: { unfreeze?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json('PUT', `/apps/${appRef(ref).path}`, { query: { frozen: opts.unfreeze ? 'false' : 'true' } });
      ctx.ui.result(body ?? { frozen: !opts.unfreeze }, `${ref} ${opts.unfreeze ? 'unfrozen' : 'frozen'}`);
    });

  apps
    .command('delete <app>')
    .description('Delete NAMESPACE/REPOSITORY/VERSION')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const body = await ctx.client().json('DELETE', `/apps/${appRef(ref).path}`);
      ctx.ui.result(body ?? { deleted: ref }, `${ref} deleted`);
    });

  const perms = program.command('perms').description('ECR permissions on a namespace or repository');
  const grantee = (c: Command) =>
    c
      .option('--user <login>', 'a user')
      .option('--group <group>', 'a group')
      .option('--public', 'everyone (GROUP AllUsers)');
  const who = (opts: { user?: string; group?: string; public?: boolean }) => {
    const given = [opts.user, opts.group, opts.public].filter(Boolean).length;
    if (given !== 1) throw new CliError('Name exactly one of --user, --group, --public', EXIT.usage);
    return opts.user ? { granteeType: 'USER', grantee: opts.user } : { granteeType: 'GROUP', grantee: opts.public ? 'AllUsers' : opts.group! };
  };
  const LEVELS = ['READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL'];
  const level = (p: string) => {
    const v = p.toUpperCase();
    if (!LEVELS.includes(v)) throw new CliError(`--permission must be one of ${LEVELS.join(', ')}`, EXIT.usage);
    return v;
  };

  perms
    .command('get <target>')
    .description('Show the grants on NAMESPACE or NAMESPACE/REPOSITORY')
    .action(async (target: string, _opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const grants = await ctx.client().json<{ granteeType: string; grantee: string; permission: string; resourceName?: string }[]>('GET', `/permissions/${resourceRef(target)}`);
      ctx.ui.result(grants, () => table([['TYPE', 'GRANTEE', 'PERMISSION', 'ON'], ...grants.map((g) => [g.granteeType, g.grantee, g.permission, g.resourceName])]));
    });

  grantee(perms.command('grant <target>').description('Grant a level on NAMESPACE or NAMESPACE/REPOSITORY'))
    .option('-p, --permission <level>', 'READ, WRITE, READ_ACP, WRITE_ACP or FULL_CONTROL', 'READ')
    .action(async (target: string, opts: { user?: string; group?: string; public?: boolean; permission: string }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const change = { operation: 'add', ...who(opts), permission: level(opts.permission) };
      const body = await ctx.client().json('PUT', `/permissions/${resourceRef(target)}`, { json: change });
      ctx.ui.result(body ?? change, `Granted ${change.permission} on ${target} to ${change.granteeType} ${change.grantee}`);
    });

  grantee(perms.command('revoke <target>').description('Remove grants on NAMESPACE or NAMESPACE/REPOSITORY'))
    .option('-p, --permission <level>', 'only this level (default: every level the grantee holds there)')
    .option('--all', 'remove every grant except the owner\'s')
    .action(async (target: string, opts: { user?: string; group?: string; public?: boolean; permission?: string; all?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const client = ctx.client();
      const at = `/permissions/${resourceRef(target)}`;
      if (opts.all) {
        const body = await client.json('PUT', at, { json: { operation: 'delete' } });
        return ctx.ui.result(body ?? { operation: 'delete' }, `Revoked every grant on ${target} but the owner's`);
      }
      const grantee = who(opts);
      // A delete names one grant completely: without -p, every level the grantee holds here.
      let levels: string[];
      if (opts.permission) levels = [level(opts.permission)];
      else {
        const grants = await client.json<{ granteeType: string; grantee: string; permission: string; resourceName?: string }[]>('GET', at);
        levels = grants.filter((g) => g.granteeType === grantee.granteeType && g.grantee === grantee.grantee && (!g.resourceName || g.resourceName === target)).map((g) => g.permission);
        if (!levels.length) throw new CliError(`${grantee.granteeType} ${grantee.grantee} holds no grant on ${target}`, EXIT.notFound);
      }
      const results = [];
      for (const permission of levels) results.push(await client.json('PUT', at, { json: { operation: 'delete', ...grantee, permission } }));
      ctx.ui.result({ revoked: levels, ...grantee, results }, `Revoked ${levels.join(', ')} on ${target} from ${grantee.granteeType} ${grantee.grantee}`);
    });
}
