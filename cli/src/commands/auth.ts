/** login, logout, whoami. */
import os from 'node:os';
import type { Command } from 'commander';
import { clearConfig, configFile, DEFAULT_URL, normalizeUrl, readConfig, writeConfig } from '../config.js';
import { ctxOf, type Io } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { Client } from '../http.js';

interface Identity {
  id: string;
  login: string;
  admin: boolean;
  approved: boolean;
  groups: string[];
}

/** Everything on stdin (a token or password piped in), trimmed of its line end. */
async function readStdin(io: Io): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of io.stdin) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Asks on the terminal without echoing what is typed. */
async function promptHidden(io: Io, question: string): Promise<string> {
  const stdin = io.stdin as NodeJS.ReadStream;
  if (!stdin.isTTY) return readStdin(io);
  io.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          cleanup();
          io.stderr.write('\n');
          return resolve(value);
        }
        if (ch === '\u0003') {
          cleanup();
          return reject(new CliError('Interrupted', EXIT.usage));
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const cleanup = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
    };
    stdin.on('data', onData);
  });
}

export function authCommands(program: Command, io: Io): void {
  program
    .command('login')
    .description('Sign in and store the credentials (an API token) in the config file, mode 0600')
    .option('--token <token>', 'an API token (prefer --token-stdin or the prompt: arguments are visible to other local users)')
    .option('--token-stdin', 'read the API token from stdin')
    .option('-u, --user <login>', 'sign in with a login and password; an API token is made for this machine and stored')
    .option('--password-stdin', 'read the password from stdin (with --user)')
    .addHelpText('after', `\nThe gateway URL comes from --url, DOCKYARD_URL, the stored one or ${DEFAULT_URL}.`)
    .action(async (opts: { token?: string; tokenStdin?: boolean; user?: string; passwordStdin?: boolean }, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const stored = readConfig(io.env);
      const url = normalizeUrl(ctx.globals.url ?? (io.env.DOCKYARD_URL || undefined) ?? stored.url ?? DEFAULT_URL);
      if (opts.user && (opts.token || opts.tokenStdin)) throw new CliError('Use either --user or a token, not both', EXIT.usage);
      let token: string;
      let tokenId: string | undefined;
      if (opts.user) {
        const password = opts.passwordStdin ? await readStdin(io) : await promptHidden(io, `Password for ${opts.user}: `);
        if (!password) throw new CliError('No password given', EXIT.usage);
        const anon = new Client(url, undefined, io.fetch);
        const res = await anon.request('POST', '/login', { json: { login: opts.user, password } });
        const cookie = (res.headers.getSetCookie?.() ?? [res.headers.get('set-cookie') ?? ''])
          .map((c) => c.split(';')[0])
          .find((c) => c.startsWith('session='));
        await res.body?.cancel();
        if (!cookie) throw new CliError('The gateway signed you in but set no session cookie', EXIT.unexpected);
        const headers = { cookie };
        const created = await anon.json<{ id: string | number; token: string }>('POST', '/auth/tokens', {
          json: { name: `dockyard-cli@${os.hostname()}`.slice(0, 128) },
          headers,
        });
        token = created.token;
        tokenId = String(created.id);
        // The session is not needed any more: the token is what is kept.
        await anon.request('POST', '/logout', { headers, allow: [401, 404] }).then((r) => r.body?.cancel(), () => undefined);
      } else {
        token = opts.token ?? (opts.tokenStdin ? await readStdin(io) : await promptHidden(io, 'API token: '));
        token = token.trim();
        if (!token) throw new CliError('No token given', EXIT.usage);
      }
      const me = await new Client(url, token, io.fetch).json<Identity>('GET', '/auth/whoami');
      if (!me?.login) throw new CliError('The token does not identify a user', EXIT.refused);
      const file = writeConfig({ url, token, login: me.login, ...(tokenId ? { tokenId } : {}) }, io.env);
      ctx.ui.result({ url, login: me.login, admin: me.admin, file }, `Signed in to ${url} as ${me.login}${me.admin ? ' (admin)' : ''}; credentials in ${file}`);
    });

  program
    .command('logout')
    .description('Forget the stored credentials (and revoke the API token `login --user` made)')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      const stored = readConfig(io.env);
      let revoked = false;
      if (stored.token && stored.tokenId && stored.url) {
        const res = await new Client(stored.url, stored.token, io.fetch)
          .request('DELETE', `/auth/tokens/${encodeURIComponent(stored.tokenId)}`, { allow: [401, 404] })
          .catch(() => undefined);
        revoked = Boolean(res?.ok);
        await res?.body?.cancel();
      }
      clearConfig(io.env);
      ctx.ui.result({ loggedOut: Boolean(stored.token), revoked, file: configFile(io.env) }, stored.token ? `Signed out of ${stored.url}${revoked ? ' (token revoked)' : ''}` : 'Not signed in');
    });

  program
    .command('whoami')
    .description('Who the stored (or DOCKYARD_TOKEN) credentials identify')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = ctxOf(cmd, io);
      if (!ctx.settings.token) throw new CliError('Not signed in: run `dockyard login` or set DOCKYARD_TOKEN', EXIT.refused);
      const me = await ctx.client().json<Identity>('GET', '/auth/whoami');
      ctx.ui.result({ ...me, url: ctx.settings.url }, [
        `${me.login}${me.admin ? ' (admin)' : ''} at ${ctx.settings.url}`,
        ...(me.groups?.length ? [`groups: ${me.groups.join(', ')}`] : []),
      ]);
    });
}
