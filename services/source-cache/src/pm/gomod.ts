import { createHash } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import yauzl from 'yauzl';
import { ChecksumError } from '../domain/cache.js';
import type { BundleFile, Dependency, PackageResult } from '../domain/types.js';
import { mapLimit, PmError, readPackageFile, type PackageManager } from './types.js';

/** The module proxy's case encoding: every upper-case letter becomes `!` + its lower case. */
export const escapeModule = (s: string) => s.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`);

const MODULE = /^[A-Za-z0-9][A-Za-z0-9._~+-]*(\/[A-Za-z0-9._~+-]+)*$/;
const VERSION = /^v[0-9A-Za-z.+-]+$/;

/** Go's dirhash Hash1 over (name, content) pairs: sha256 of the sorted `sha256sum`-style listing. */
export function hash1(entries: { name: string; sha256: string }[]): string {
  const lines = [...entries]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => {
      if (e.name.includes('\n')) throw new ChecksumError(`A file name in the module contains a newline: ${JSON.stringify(e.name)}`);
      return `${e.sha256}  ${e.name}\n`;
    })
    .join('');
  return `h1:${createHash('sha256').update(lines).digest('base64')}`;
}

/** The h1 hash of a module zip (every file entry, by its full `module@version/...` name). */
export async function hashModuleZip(file: string, maxEntries = 100_000): Promise<string> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(file, { lazyEntries: true, autoClose: true }, (err, z) => (err || !z ? reject(new ChecksumError(`The module zip is unreadable: ${err?.message}`)) : resolve(z))),
  );
  const entries: { name: string; sha256: string }[] = [];
  await new Promise<void>((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', () => resolve());
    zip.on('entry', (entry: yauzl.Entry) => {
      if (entries.length >= maxEntries) return reject(new ChecksumError('The module zip has too many entries'));
      if (entry.fileName.endsWith('/')) return zip.readEntry();
      zip.openReadStream(entry, (err, stream) => {
        if (err || !stream) return reject(err ?? new Error('unreadable zip entry'));
        const h = createHash('sha256');
        stream.on('data', (c: Buffer) => h.update(c));
        stream.on('error', reject);
        stream.on('end', () => {
          entries.push({ name: entry.fileName, sha256: h.digest('hex') });
          zip.readEntry();
        });
      });
    });
    zip.readEntry();
  });
  return hash1(entries);
}

/** The h1 hash of a go.mod file (go.sum's `/go.mod` lines). */
export async function hashGoMod(file: string): Promise<string> {
  return hash1([{ name: 'go.mod', sha256: createHash('sha256').update(await readFile(file)).digest('hex') }]);
}

interface SumLine {
  module: string;
  version: string;
  goMod: boolean;
  hash: string;
}

export function parseGoSum(text: string): SumLine[] {
  const out: SumLine[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const parts = line.split(/\s+/);
    if (parts.length !== 3 || !parts[2].startsWith('h1:')) throw new PmError(`go.sum line ${i + 1} is malformed: ${line}`);
    const goMod = parts[1].endsWith('/go.mod');
    out.push({ module: parts[0], version: goMod ? parts[1].slice(0, -'/go.mod'.length) : parts[1], goMod, hash: parts[2] });
  }
  return out;
}

/** The directives of a go.mod that matter here: requirements and module replacements. */
export function parseGoModDirectives(goMod: string): { require: Map<string, string>; replace: { from: string; fromVersion?: string; to: string; toVersion?: string }[] } {
  const require = new Map<string, string>();
  const replace: { from: string; fromVersion?: string; to: string; toVersion?: string }[] = [];
  let block: string | null = null;
  for (const raw of goMod.split('\n')) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (!line) continue;
    if (block) {
      if (line === ')') {
        block = null;
        continue;
      }
    }
    const open = /^(require|replace)\s*\($/.exec(line);
    if (open) {
      block = open[1];
      continue;
    }
    const m = /^(require|replace)\s+(.*)$/.exec(line);
    const [verb, rest] = block ? [block, line] : m ? [m[1], m[2]] : [null, ''];
    if (verb === 'require') {
      const [mod, version] = rest.split(/\s+/);
      if (mod && version) require.set(mod.replace(/"/g, ''), version);
    } else if (verb === 'replace') {
      const [left, right] = rest.split('=>').map((x) => x.trim().split(/\s+/));
      if (left?.[0] && right?.[0]) replace.push({ from: left[0], fromVersion: left[1], to: right[0], toVersion: right[1] });
    }
  }
  return { require, replace };
}

export function moduleName(goMod: string): string | null {
  const m = /^\s*module\s+("?)([^"\s]+)\1\s*$/m.exec(goMod);
  return m ? m[2] : null;
}

/**
 * gomod: reads go.mod + go.sum only and fetches, through the Go module proxy protocol and the
 * cache, every module zip and go.mod file go.sum lists, each checked against its `h1:` hash. They
 * are laid out as a module cache (deps/gomod/pkg/mod/cache/download/...), which `go build` reads
 * with GOPROXY=off, GOFLAGS=-mod=mod.
 */
export const gomod: PackageManager = async (ctx) => {
  const packages: PackageResult[] = [];
  const files = new Map<string, BundleFile>();
  const proxy = ctx.upstreams.goproxy.replace(/\/$/, '');
  const download = 'deps/gomod/pkg/mod/cache/download';
  const versions = new Map<string, Set<string>>();

  const place = async (module: string, version: string, ext: 'mod' | 'zip', expected: string | null) => {
    const rel = `${escapeModule(module)}/@v/${escapeModule(version)}.${ext}`;
    const verify = async (file: string) => {
      if (expected === null) return;
      const got = ext === 'zip' ? await hashModuleZip(file) : await hashGoMod(file);
      if (got !== expected) throw new ChecksumError(`The checksum of gomod ${module}@${version}${ext === 'mod' ? '/go.mod' : ''} does not match go.sum (expected ${expected}, got ${got})`);
    };
    const got = await ctx.cache.get(`${proxy}/${rel}`, `${proxy}/${rel}`, (f) => verify(f));
    const bundlePath = `${download}/${rel}`;
    if (!files.has(bundlePath)) {
      files.set(bundlePath, { pm: 'gomod', path: bundlePath, sha256: got.digests.sha256, name: module, version });
      await ctx.cache.place(got.digests.sha256, path.join(ctx.bundleDir, bundlePath));
      if (!versions.has(module)) versions.set(module, new Set());
      versions.get(module)!.add(version);
    }
    if (ext === 'zip') {
      await writeFile(path.join(ctx.bundleDir, `${download}/${escapeModule(module)}/@v/${escapeModule(version)}.ziphash`), expected ?? (await hashModuleZip(got.file)));
    }
  };

  for (const rel of ctx.paths) {
    const dir = path.join(ctx.appDir, rel);
    const goModText = await readPackageFile(dir, 'go.mod', 'gomod', rel);
    const name = moduleName(goModText);
    if (!name) throw new PmError(`The go.mod at "${rel}" has no module directive`);
    let sum: SumLine[] = [];
    try {
      sum = parseGoSum(await readFile(path.join(dir, 'go.sum'), 'utf8'));
    } catch (err) {
      if (err instanceof PmError) throw err;
      // No go.sum: a module with no dependencies.
    }
    const replacements = new Map(ctx.dependencyReplacements.map((r) => [r.name, r]));
    // go.mod's own `replace X => Y vN`: go.sum lists Y, which then replaces X.
    const directives = parseGoModDirectives(goModText);
    const replacedBy = new Map<string, { name: string; type: string; version: string }>();
    for (const r of directives.replace) {
      if (!r.toVersion) continue; // a local directory: part of the source, not a dependency
      replacedBy.set(`${r.to}@${r.toVersion}`, { name: r.from, type: 'gomod', version: r.fromVersion ?? directives.require.get(r.from) ?? '' });
    }
    const dependencies: Dependency[] = [];
    const regular: SumLine[] = [];
    for (const line of sum) {
      if (!MODULE.test(line.module) || line.module.split('/').includes('..') || !VERSION.test(line.version)) {
        throw new PmError(`go.sum names an invalid module or version: ${line.module} ${line.version}`);
      }
      const r = replacements.get(line.module);
      if (r) {
        if (!line.goMod) {
          const newName = r.new_name ?? r.name;
          // A replacement is not in go.sum: fetched unverified, as `go mod download` would after editing go.mod.
          await place(newName, r.version, 'mod', null);
          await place(newName, r.version, 'zip', null);
          dependencies.push({ name: newName, type: 'gomod', version: r.version, replaces: { name: line.module, type: 'gomod', version: line.version } });
        }
        continue;
      }
      regular.push(line);
      if (!line.goMod) dependencies.push({ name: line.module, type: 'gomod', version: line.version, replaces: replacedBy.get(`${line.module}@${line.version}`) ?? null });
    }
    await mapLimit(regular, 8, (line) => place(line.module, line.version, line.goMod ? 'mod' : 'zip', line.hash));
    const version = `v0.0.0-${ctx.ref.slice(0, 12)}`;
    packages.push({ name, type: 'gomod', version, path: rel, dependencies });
    ctx.log(`gomod: ${rel}: module ${name}, ${dependencies.length} dependencies`);
  }
  // Each module's version list and .info files, as the module cache keeps them.
  for (const [module, vs] of versions) {
    const dir = path.join(ctx.bundleDir, download, escapeModule(module), '@v');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'list'), `${[...vs].sort().join('\n')}\n`);
    for (const v of vs) await writeFile(path.join(dir, `${escapeModule(v)}.info`), JSON.stringify({ Version: v }));
  }
  const env = {
    GOCACHE: { value: 'deps/gomod', kind: 'path' as const },
    GOFLAGS: { value: '-mod=mod', kind: 'literal' as const },
    GOMODCACHE: { value: 'deps/gomod/pkg/mod', kind: 'path' as const },
    GOPATH: { value: 'deps/gomod', kind: 'path' as const },
    GOPROXY: { value: 'off', kind: 'literal' as const },
    GOSUMDB: { value: 'off', kind: 'literal' as const },
    ...(ctx.flags.includes('cgo-disable') ? { CGO_ENABLED: { value: '0', kind: 'literal' as const } } : {}),
  };
  return { packages, env, configFiles: [], files: [...files.values()] };
};
