import { lstat, mkdtemp, readdir, realpath, rm } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createGzip } from 'node:zlib';
import { simpleGit, type SimpleGit } from 'simple-git';
import tarFs from 'tar-fs';
import { assertGitUrlAllowed, badRequest, HttpError, type BlobInfo, type BlobStore, type GitPolicy } from '@dockyard/kit';
import type { AppSource } from './document.js';
import { VERSION } from './document.js';

/** The files an app may ship in `ecr-meta/`, imported on submit and served under /meta-files. */
const META_FILE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const META_MAX_FILES = 20;
const META_MAX_BYTES = 5 * 1024 * 1024;
/** Nested submodules beyond this depth are refused (a loop of submodules would never end). */
const MAX_SUBMODULE_DEPTH = 4;

export interface CheckedOut {
  dir: string;
  /** The commit HEAD resolved to. */
  commit: string;
  /** `git describe --tags`, when a tag is reachable. */
  describe: string | null;
  cleanup(): Promise<void>;
}

export interface SourceOptions {
  policy: GitPolicy;
  timeoutMs: number;
  maxArchiveBytes: number;
}

/** Operator settings git may need (CA bundles, proxies); nothing else of the service's environment reaches git. */
const PASSED_ENV = ['PATH', 'LANG', 'GIT_SSL_CAINFO', 'GIT_SSL_CAPATH', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY'];

function gitEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of PASSED_ENV) if (process.env[key] !== undefined) env[key] = process.env[key] as string;
  // No user or system git config (no insteadOf rewrites, credential helpers); never wait for a
  // password on a terminal: a private repository fails at once instead.
  return { ...env, HOME: os.tmpdir(), GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0' };
}

/** The first meaningful line of git's error output: the reason a clone failed, for the caller. */
function gitReason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const fatal = lines.find((l) => /^(fatal|error):/.test(l));
  return (fatal ?? lines[0] ?? 'unknown error').slice(0, 500);
}

/** A submodule URL as git resolves it: `./x` and `../x` are relative to the superproject's URL. */
export function resolveSubmoduleUrl(parent: string, url: string): string {
  if (!url.startsWith('./') && !url.startsWith('../')) return url;
  let base = parent.replace(/\/+$/, '');
  let rest = url;
  for (;;) {
    if (rest.startsWith('./')) rest = rest.slice(2);
    else if (rest.startsWith('../')) {
      rest = rest.slice(3);
      const cut = base.lastIndexOf('/');
      if (cut <= base.indexOf('//') + 1) throw badRequest(`source.url: submodule URL ${url} escapes the repository host`);
      base = base.slice(0, cut);
    } else break;
  }
  return `${base}/${rest}`;
}

/** Clones, checks out and describes the app's source; every git URL (submodules too) passes the policy first. */
export class SourceFetcher {
  constructor(private readonly opts: SourceOptions) {}

  private git(baseDir: string, signal: AbortSignal): SimpleGit {
    const allowFile = this.opts.policy.schemes.has('file');
    return simpleGit({
      baseDir,
      abort: signal,
      // Our own fixed protocol.* settings only tighten git's defaults; simple-git asks to be told.
      unsafe: { allowUnsafeProtocolOverride: true },
      config: ['protocol.ext.allow=never', `protocol.file.allow=${allowFile ? 'always' : 'never'}`, 'advice.detachedHead=false'],
      allowEnvironment: ['GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', ...PASSED_ENV.filter((k) => k.startsWith('GIT_'))],
    }).env(gitEnv());
  }

  /** Refuses (400, saying so) a URL DOCKYARD_GIT_ALLOW does not allow. */
  async assertAllowed(url: string): Promise<void> {
    await assertGitUrlAllowed(url, this.opts.policy).catch((err: HttpError) => {
      throw badRequest(`source.url: ${err.message}`);
    });
  }

  async checkout(source: AppSource): Promise<CheckedOut> {
    // The policy is checked before anything is spawned: a refused URL never reaches git.
    await this.assertAllowed(source.url);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'dockyard-registry-src-'));
    const cleanup = () => rm(dir, { recursive: true, force: true });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.opts.timeoutMs);
    try {
      const ref = source.tag ?? source.branch; // tag wins, as in ECR
      const args = ref ? ['--branch', ref] : [];
      try {
        await this.git(dir, controller.signal).clone(source.url, path.join(dir, 'src'), [...args, '--no-recurse-submodules']);
      } catch (err) {
        if (controller.signal.aborted) throw badRequest(`source.url: git clone took longer than ${this.opts.timeoutMs / 1000} s`);
        throw badRequest(`source.url: git clone failed: ${gitReason(err)}`);
      }
      const repo = path.join(dir, 'src');
      await this.submodules(repo, source.url, controller.signal, 0);
      const git = this.git(repo, controller.signal);
      const commit = (await git.revparse(['HEAD'])).trim();
      const describe = await git.raw(['describe', '--tags']).then((s) => s.trim() || null, () => null);
      if (source.directory) await this.assertInside(repo, source.directory, 'source.directory');
      return { dir: repo, commit, describe, cleanup };
    } catch (err) {
      await cleanup();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Initialises submodules one level at a time, checking each URL against the policy first. */
  private async submodules(repo: string, parentUrl: string, signal: AbortSignal, depth: number): Promise<void> {
    const git = this.git(repo, signal);
    const listed = await git.raw(['config', '--file', '.gitmodules', '--get-regexp', '^submodule\\..*\\.(url|path)$']).catch(() => '');
    if (!listed.trim()) return;
    if (depth >= MAX_SUBMODULE_DEPTH) throw badRequest(`source.url: submodules nested deeper than ${MAX_SUBMODULE_DEPTH} levels`);
    const modules = new Map<string, { url?: string; path?: string }>();
    for (const line of listed.trim().split('\n')) {
      const m = /^submodule\.(.+)\.(url|path) (.*)$/.exec(line);
      if (!m) continue;
      const entry = modules.get(m[1]) ?? {};
      entry[m[2] as 'url' | 'path'] = m[3];
      modules.set(m[1], entry);
    }
    for (const [name, mod] of modules) {
      if (!mod.url || !mod.path) continue;
      const url = resolveSubmoduleUrl(parentUrl, mod.url);
      await assertGitUrlAllowed(url, this.opts.policy).catch((err: HttpError) => {
        throw badRequest(`source.url: submodule ${name}: ${err.message}`);
      });
      try {
        await git.raw(['submodule', 'update', '--init', '--', mod.path]);
      } catch (err) {
        if (signal.aborted) throw badRequest(`source.url: git clone took longer than ${this.opts.timeoutMs / 1000} s`);
        throw badRequest(`source.url: submodule ${name} failed: ${gitReason(err)}`);
      }
      await this.assertInside(repo, mod.path, `submodule ${name}`);
      await this.submodules(path.join(repo, mod.path), url, signal, depth + 1);
    }
  }

  /** A path in the checkout that exists and does not leave it (through `..` or a symlink). */
  private async assertInside(repo: string, rel: string, field: string): Promise<string> {
    const root = await realpath(repo);
    let real: string;
    try {
      real = await realpath(path.join(repo, rel));
    } catch {
      throw badRequest(`${field}: ${rel} does not exist in the repository`);
    }
    if (real !== root && !real.startsWith(root + path.sep)) throw badRequest(`${field}: ${rel} leads outside the repository`);
    return real;
  }

  /** The version `git describe --tags` gives, when the submit named none. */
  static derivedVersion(out: CheckedOut): string {
    if (!out.describe) throw badRequest('version: not given, and git describe --tags found no tag to derive it from');
    if (!VERSION.test(out.describe)) throw badRequest(`version: git describe --tags gave "${out.describe}", which is not a valid version`);
    return out.describe;
  }

  /** Stores the checked-out tree (without .git) as a gzipped tar; symlinks stay links, never followed. */
  async storeArchive(blobs: BlobStore, out: CheckedOut, key: string): Promise<BlobInfo> {
    const pack = tarFs.pack(out.dir, {
      ignore: (name: string) => path.basename(name) === '.git',
      // Deterministic-ish metadata: owner and mode bits as git would have them.
      map: (header) => ({ ...header, uid: 0, gid: 0, uname: '', gname: '' }),
    });
    return blobs.put(key, pack.pipe(createGzip()), { maxBytes: this.opts.maxArchiveBytes }).catch((err: unknown) => {
      if (err instanceof HttpError && err.statusCode === 413) throw badRequest(`source.url: the source is larger than ${this.opts.maxArchiveBytes} bytes (compressed)`);
      throw err;
    });
  }

  /**
   * Imports `ecr-meta/` (in `source.directory`, else at the repository root): regular files with
   * plain names only, bounded in number and size. Returns file name -> blob.
   */
  async importMeta(blobs: BlobStore, out: CheckedOut, directory: string | undefined, keyPrefix: string): Promise<Record<string, BlobInfo>> {
    const candidates = [...(directory ? [path.join(out.dir, directory, 'ecr-meta')] : []), path.join(out.dir, 'ecr-meta')];
    const root = await realpath(out.dir);
    for (const dir of candidates) {
      const st = await lstat(dir).catch(() => null);
      if (!st?.isDirectory()) continue;
      const real = await realpath(dir);
      if (!real.startsWith(root + path.sep)) continue;
      const imported: Record<string, BlobInfo> = {};
      for (const name of (await readdir(dir)).sort()) {
        const file = path.join(dir, name);
        const fst = await lstat(file);
        if (!fst.isFile() || !META_FILE.test(name) || name.endsWith('.meta') || fst.size > META_MAX_BYTES) continue; // symlinks and odd names skipped
        if (Object.keys(imported).length >= META_MAX_FILES) break;
        imported[name] = await blobs.put(`${keyPrefix}/${name}`, createReadStream(file), { maxBytes: META_MAX_BYTES });
      }
      return imported;
    }
    return {};
  }
}
