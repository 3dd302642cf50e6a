/** What every command gets: the output, the resolved settings and a gateway client. */
import { openAsBlob } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { resolveSettings, type Settings } from './config.js';
import { CliError, EXIT } from './errors.js';
import { Client, type Fetch } from './http.js';
import { Ui } from './ui.js';

export interface Io {
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  fetch: Fetch;
}

export interface GlobalOptions {
  url?: string;
  json?: boolean;
}

export class Ctx {
  readonly ui: Ui;
  private settingsCache?: Settings;
  constructor(
    readonly io: Io,
    readonly globals: GlobalOptions,
  ) {
    this.ui = new Ui(Boolean(globals.json), io.stdout, io.stderr);
  }

  get settings(): Settings {
    return (this.settingsCache ??= resolveSettings({ url: this.globals.url }, this.io.env));
  }

  client(): Client {
    return new Client(this.settings.url, this.settings.token, this.io.fetch);
  }

  /** How often waiting commands ask again (DOCKYARD_POLL_MS, default 1000). */
  get pollMs(): number {
    const v = Number(this.io.env.DOCKYARD_POLL_MS);
    return Number.isFinite(v) && v >= 50 ? v : 1000;
  }
}

/** The context of the command being run (global options merged in). */
export function ctxOf(cmd: Command, io: Io): Ctx {
  return new Ctx(io, cmd.optsWithGlobals() as GlobalOptions);
}

/** `ns/repo/version` -> its parts; a usage error naming the expected form otherwise. */
export function appRef(ref: string): { namespace: string; repository: string; version: string; path: string } {
  const parts = ref.split('/');
  if (parts.length !== 3 || parts.some((p) => !p)) throw new CliError(`Expected NAMESPACE/REPOSITORY/VERSION, got "${ref}"`, EXIT.usage);
  const [namespace, repository, version] = parts;
  return { namespace, repository, version, path: parts.map(encodeURIComponent).join('/') };
}

/** `ns` or `ns/repo`. */
export function resourceRef(ref: string): string {
  const parts = ref.split('/');
  if (parts.length > 2 || parts.some((p) => !p)) throw new CliError(`Expected NAMESPACE or NAMESPACE/REPOSITORY, got "${ref}"`, EXIT.usage);
  return parts.map(encodeURIComponent).join('/');
}

/** A positive integer id argument. */
export function intId(value: string, what = 'id'): string {
  if (!/^[1-9][0-9]*$/.test(value)) throw new CliError(`${what} must be a positive integer, got "${value}"`, EXIT.usage);
  return value;
}

/** A file to upload as a disk-backed Blob (streamed, never read whole). */
export async function fileBlob(file: string): Promise<{ blob: Blob; name: string; size: number }> {
  let st;
  try {
    st = await stat(file);
  } catch {
    throw new CliError(`No such file: ${file}`, EXIT.usage);
  }
  if (!st.isFile()) throw new CliError(`Not a regular file: ${file}`, EXIT.usage);
  return { blob: await openAsBlob(file), name: path.basename(file), size: st.size };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Asks `get` until `done` says so, showing `label: <state>` in a spinner; returns the last answer.
 * `ok` decides the spinner's ending mark.
 */
export async function waitUntil<T>(
  ctx: Ctx,
  label: string,
  get: () => Promise<T>,
  state: (v: T) => string,
  done: (v: T) => boolean,
  ok: (v: T) => boolean = () => true,
): Promise<T> {
  const spinner = ctx.ui.spinner(`${label}: …`);
  try {
    for (;;) {
      const value = await get();
      spinner.update(`${label}: ${state(value)}`);
      if (done(value)) {
        spinner.stop(ok(value), `${label}: ${state(value)}`);
        return value;
      }
      await sleep(ctx.pollMs);
    }
  } catch (err) {
    spinner.stop(false);
    throw err;
  }
}

/** Where a download goes: `-o`, else the server's file name, else `fallback`, in the current directory. */
export function outputPath(output: string | undefined, fallback: string): string {
  return path.resolve(output ?? fallback);
}

/** Runs a download with a progress bar; the result for --json. */
export async function download(ctx: Ctx, apiPath: string, file: string, label: string) {
  const bar = ctx.ui.progress(label);
  try {
    const r = await ctx.client().download(apiPath, file, (n, t) => bar.update(n, t));
    return { file, bytes: r.bytes };
  } finally {
    bar.stop();
  }
}

/** A multipart upload with a progress bar over `total` bytes (the files' sizes). */
export async function upload<T>(ctx: Ctx, apiPath: string, form: FormData, total: number, label = 'upload'): Promise<T> {
  const bar = total > 0 ? ctx.ui.progress(label, total) : undefined;
  try {
    return await ctx.client().json<T>('POST', apiPath, { multipart: form, onUpload: bar ? (n) => bar.update(Math.min(n, total), total) : undefined });
  } finally {
    bar?.stop();
  }
}
