/**
 * Where `dockyard` keeps its credentials: `$XDG_CONFIG_HOME/dockyard/config.json` (default
 * `~/.config/dockyard/config.json`), the file 0600 in a 0700 directory. A file others can read is
 * refused with a message saying how to fix it. `DOCKYARD_URL` / `DOCKYARD_TOKEN` override it.
 */
import { chmodSync, mkdirSync, openSync, closeSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError, EXIT } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export interface StoredConfig {
  url?: string;
  token?: string;
  login?: string;
  /** The id of the API token `dockyard login --user` created (revoked again by `logout`). */
  tokenId?: string;
}

export interface Settings {
  url: string;
  token?: string;
  /** Where the url and token came from, for whoami and messages. */
  source: 'env' | 'file' | 'default';
}

/** The configuration directory for `env` (XDG_CONFIG_HOME honoured). */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'dockyard');
}

export function configFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(configDir(env), 'config.json');
}

/** Reads the stored configuration; nothing stored is `{}`. Refuses a file group or others may read. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): StoredConfig {
  const file = configFile(env);
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  if (mode & 0o077) {
    throw new CliError(
      `${file} is readable by other users (mode ${(mode & 0o777).toString(8)}); it holds your token. Fix it with: chmod 600 ${file}`,
      EXIT.refused,
    );
  }
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as StoredConfig) : {};
  } catch {
    throw new CliError(`${file} is not valid JSON; remove it and sign in again (dockyard login)`, EXIT.unexpected);
  }
}

/** Writes the configuration atomically: directory 0700, file 0600 from its first byte. */
export function writeConfig(config: StoredConfig, env: NodeJS.ProcessEnv = process.env): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = configFile(env);
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, `${JSON.stringify(config, null, 2)}\n`);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/** Removes the stored credentials (keeps nothing). */
export function clearConfig(env: NodeJS.ProcessEnv = process.env): void {
  rmSync(configFile(env), { force: true });
}

/** The URL and token to use: `--url`, then DOCKYARD_URL / DOCKYARD_TOKEN, then the file. */
export function resolveSettings(opts: { url?: string }, env: NodeJS.ProcessEnv = process.env): Settings {
  const envUrl = env.DOCKYARD_URL || undefined;
  const envToken = env.DOCKYARD_TOKEN || undefined;
  // The file is read only when something is still missing, so env-only use needs no file.
  const stored = opts.url && envToken ? {} : envUrl && envToken ? {} : readConfig(env);
  const url = normalizeUrl(opts.url ?? envUrl ?? stored.url ?? DEFAULT_URL);
  const token = envToken ?? (opts.url && stored.url && normalizeUrl(stored.url) !== url ? undefined : stored.token);
  const source = envToken || envUrl ? 'env' : stored.token ? 'file' : 'default';
  return { url, token, source };
}

/** `host:port` or a URL without trailing slashes; refuses anything not http(s). */
export function normalizeUrl(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new CliError(`Not a URL: ${raw}`, EXIT.usage);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`Only http and https URLs are supported: ${raw}`, EXIT.usage);
  return u.toString().replace(/\/+$/, '');
}
