/**
 * Test fixtures: git repositories made on disk (cloned over file://, allowed by a test-only git
 * policy) and one local upstream HTTP server acting as npm registry, PyPI simple index and Go
 * module proxy, serving packages the tests make, with a counter per request path.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { create as createTar } from 'tar';
import yazl from 'yazl';
import { escapeModule, hash1 } from '../src/pm/gomod.js';

const made: string[] = [];

/** A temporary directory removed by {@link removeTempDirs} (the harness calls it on close). */
export function tmpDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export type RepoFile = string | { symlink: string };

const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', ['-c', 'user.email=t@example.org', '-c', 'user.name=t', '-c', 'init.defaultBranch=main', ...args], { cwd, encoding: 'utf8' }).trim();

/** A git repository with these files committed; returns its file:// URL and the commit. */
export function makeRepo(files: Record<string, RepoFile>, dir = path.join(tmpDir('repo-'), 'project')): { url: string; ref: string; dir: string } {
  mkdirSync(dir, { recursive: true });
  git(dir, 'init', '-q');
  for (const [name, content] of Object.entries(files)) {
    const p = path.join(dir, name);
    mkdirSync(path.dirname(p), { recursive: true });
    if (typeof content === 'string') writeFileSync(p, content);
    else symlinkSync(content.symlink, p);
  }
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'fixture');
  return { url: `file://${dir}`, ref: git(dir, 'rev-parse', 'HEAD'), dir };
}

/** A superproject whose `lib` is a submodule (at its current commit) of `sub`. */
export function makeSuperproject(sub: { url: string }, files: Record<string, RepoFile> = { 'README.md': 'super\n' }): { url: string; ref: string; dir: string } {
  const repo = makeRepo(files);
  git(repo.dir, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', sub.url, 'lib');
  git(repo.dir, 'commit', '-q', '-m', 'submodule');
  return { ...repo, ref: git(repo.dir, 'rev-parse', 'HEAD') };
}

const sha = (algo: string, b: Buffer, enc: 'hex' | 'base64') => createHash(algo).update(b).digest(enc);

async function streamToBuffer(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** An npm package tarball (package/package.json) and its SRI integrity. */
export async function npmTarball(name: string, version: string): Promise<{ tgz: Buffer; integrity: string }> {
  const dir = tmpDir('npmpkg-');
  mkdirSync(path.join(dir, 'package'));
  writeFileSync(path.join(dir, 'package', 'package.json'), JSON.stringify({ name, version, main: 'index.js' }));
  writeFileSync(path.join(dir, 'package', 'index.js'), `module.exports = ${JSON.stringify(`${name}@${version}`)};\n`);
  const tgz = await streamToBuffer(createTar({ gzip: true, cwd: dir, portable: true, mtime: new Date(0) }, ['package']).pipe(new PassThrough()));
  return { tgz, integrity: `sha512-${sha('sha512', tgz, 'base64')}` };
}

/** A pure-Python sdist: `<project>-<version>/<files>`, gzip tar. */
export async function pythonSdist(project: string, version: string, files: Record<string, string>): Promise<Buffer> {
  const dir = tmpDir('sdist-');
  const top = `${project}-${version}`;
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, top, name)), { recursive: true });
    writeFileSync(path.join(dir, top, name), content);
  }
  return streamToBuffer(createTar({ gzip: true, cwd: dir, portable: true, mtime: new Date(0) }, [top]).pipe(new PassThrough()));
}

/** A Go module zip laid out as the proxy serves it, with its go.sum hashes. */
export async function goModule(module: string, version: string, files: Record<string, string> = {}): Promise<{ zip: Buffer; mod: string; h1: string; modH1: string }> {
  const mod = `module ${module}\n\ngo 1.21\n`;
  const all = { 'go.mod': mod, [`${module.split('/').pop()}.go`]: `package ${module.split('/').pop()!.replace(/[^a-z]/g, '')}\n\nconst Version = "${version}"\n`, ...files };
  const z = new yazl.ZipFile();
  for (const [name, content] of Object.entries(all)) z.addBuffer(Buffer.from(content), `${module}@${version}/${name}`, { mtime: new Date(0) });
  z.end();
  const zip = await streamToBuffer(z.outputStream);
  const h1 = hash1(Object.entries(all).map(([name, content]) => ({ name: `${module}@${version}/${name}`, sha256: sha('sha256', Buffer.from(content), 'hex') })));
  const modH1 = hash1([{ name: 'go.mod', sha256: sha('sha256', Buffer.from(mod), 'hex') }]);
  return { zip, mod, h1, modH1 };
}

/** One local upstream: npm registry, PyPI simple index and GOPROXY, counting requests per path. */
export class Upstream {
  readonly files = new Map<string, { body: Buffer; type: string }>();
  readonly hits = new Map<string, number>();
  private server!: http.Server;
  base = '';
  /** Delay before each answer (benchmarks model a registry across a network with it). */
  latencyMs = 0;

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      if (this.latencyMs) setTimeout(() => this.answer(req, res), this.latencyMs);
      else this.answer(req, res);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    {
      const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      this.hits.set(p, (this.hits.get(p) ?? 0) + 1);
      const f = this.files.get(p);
      if (!f) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': f.type, 'content-length': f.body.length }).end(f.body);
    }
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  /** Requests seen under a prefix (e.g. "/npm/"). */
  count(prefix: string): number {
    let n = 0;
    for (const [p, c] of this.hits) if (p.startsWith(prefix)) n += c;
    return n;
  }

  serve(p: string, body: Buffer | string, type = 'application/octet-stream'): void {
    this.files.set(p, { body: Buffer.from(body), type });
  }

  /** Publishes an npm package; returns what a lock file records for it. */
  async npm(name: string, version: string): Promise<{ version: string; resolved: string; integrity: string }> {
    const { tgz, integrity } = await npmTarball(name, version);
    const file = `${name}/-/${name.split('/').pop()}-${version}.tgz`;
    this.serve(`/npm/${file}`, tgz);
    return { version, resolved: `https://registry.npmjs.org/${file}`, integrity };
  }

  /** Publishes a packument (what Berry's integrity check reads) for versions already published. */
  packument(name: string, versions: Record<string, string>): void {
    this.serve(`/npm/${name}`, JSON.stringify({ name, versions: Object.fromEntries(Object.entries(versions).map(([v, integrity]) => [v, { name, version: v, dist: { integrity } }])) }), 'application/json');
  }

  /** Publishes a Go module; returns its two go.sum lines. */
  async go(module: string, version: string): Promise<string> {
    const m = await goModule(module, version);
    const base = `/goproxy/${escapeModule(module)}/@v/${escapeModule(version)}`;
    this.serve(`${base}.zip`, m.zip);
    this.serve(`${base}.mod`, m.mod, 'text/plain');
    return `${module} ${version} ${m.h1}\n${module} ${version}/go.mod ${m.modH1}\n`;
  }

  /** Publishes a PyPI sdist on the simple index; returns its sha256. */
  pypi(project: string, version: string, content: string | Buffer = `${project}-${version}`): string {
    const filename = `${project}-${version}.tar.gz`;
    const body = Buffer.from(content);
    const digest = sha('sha256', body, 'hex');
    this.serve(`/pypi/files/${filename}`, body);
    const page = `/pypi/simple/${project.toLowerCase().replace(/[-_.]+/g, '-')}/`;
    const existing = this.files.get(page)?.body.toString() ?? '';
    const link = `<a href="../../files/${filename}#sha256=${digest}">${filename}</a>\n`;
    this.serve(page, existing + link, 'text/html');
    return digest;
  }
}
