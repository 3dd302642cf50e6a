import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ChecksumError } from '../domain/cache.js';
import type { BundleFile, Dependency, PackageResult } from '../domain/types.js';
import { PmError, type PackageManager } from './types.js';

/** PEP 503 normalized project name. */
export const normalizeName = (name: string) => name.toLowerCase().replace(/[-_.]+/g, '-');

interface Requirement {
  name: string;
  version: string;
  hashes: string[];
  line: number;
}

/**
 * Reads a requirements file: every requirement must be pinned with `==`; `--hash=sha256:...`
 * options are kept. Options other than hashes (index URLs, `-e`, `-r`, URLs) are refused: they
 * would fetch from places the configuration does not allow.
 */
export function parseRequirements(text: string, file: string): Requirement[] {
  const out: Requirement[] = [];
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) continue;
    const hashes = [...line.matchAll(/--hash[=\s]+sha256:([0-9a-fA-F]{64})/g)].map((m) => m[1].toLowerCase());
    const spec = line.replace(/--hash[=\s]+\S+/g, '').trim();
    if (spec.startsWith('-')) throw new PmError(`${file} line ${i + 1}: the option "${spec.split(/\s+/)[0]}" is not supported: ${raw.trim()}`);
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([A-Za-z0-9.!+_-]+)\s*(;.*)?$/.exec(spec);
    if (!m) throw new PmError(`${file} line ${i + 1}: the requirement is not pinned with "==": ${raw.trim()}`);
    out.push({ name: m[1], version: m[3], hashes, line: i + 1 });
  }
  return out;
}

/** The files a PEP 503 simple page links, with their sha256 fragments when given. */
export function parseSimplePage(html: string, base: string): { filename: string; url: string; sha256?: string }[] {
  const out: { filename: string; url: string; sha256?: string }[] = [];
  for (const m of html.matchAll(/<a\s[^>]*href="([^"]+)"[^>]*>([^<]+)<\/a>/gi)) {
    const href = m[1].replace(/&amp;/g, '&');
    const url = new URL(href, base);
    const sha = /sha256=([0-9a-f]{64})/.exec(url.hash)?.[1];
    url.hash = '';
    out.push({ filename: m[2].trim(), url: url.toString(), sha256: sha });
  }
  return out;
}

/** Does a distribution file belong to this project version? (sdist `name-version.tar.gz|.zip`, wheel `name-version-...whl`) */
export function fileMatches(filename: string, name: string, version: string): boolean {
  let n: string;
  let v: string;
  if (filename.endsWith('.whl')) [n, v] = filename.split('-');
  else {
    const stem = filename.replace(/\.(tar\.gz|zip|tar\.bz2)$/, '');
    if (stem === filename) return false;
    const dash = stem.lastIndexOf('-');
    [n, v] = [stem.slice(0, dash), stem.slice(dash + 1)];
  }
  return !!n && normalizeName(n) === normalizeName(name) && v === version;
}

const isSdist = (f: string) => /\.(tar\.gz|zip|tar\.bz2)$/.test(f);

/**
 * Which files of a pinned version to fetch: with `--hash`es, those the index lists with one of
 * them (or, when the index gives no hashes, the sdist, checked after download); without, the sdist
 * as Cachito did (the wheels when there is none).
 */
export function chooseFiles<T extends { filename: string; sha256?: string }>(links: T[], hashes: string[]): T[] {
  if (hashes.length) {
    const listed = links.filter((l) => l.sha256 && hashes.includes(l.sha256));
    if (listed.length || links.some((l) => l.sha256)) return listed;
  }
  const sdists = links.filter((l) => isSdist(l.filename));
  return sdists.length ? sdists.slice(0, 1) : links;
}

/**
 * pip: requirements.txt and requirements-build.txt, pinned with `==`; the distribution files of
 * the pinned version that `chooseFiles` picks are fetched from the PyPI-compatible simple index through the cache, its sha256 checked
 * against `--hash` and the index's own fragment. Laid out flat as deps/pip/<file>, which `pip install --no-index --find-links deps/pip` reads.
 */
export const pip: PackageManager = async (ctx) => {
  const packages: PackageResult[] = [];
  const files = new Map<string, BundleFile>();
  const index = ctx.upstreams.pypi.replace(/\/$/, '');
  for (const rel of ctx.paths) {
    const dir = path.join(ctx.appDir, rel);
    const reqs: (Requirement & { dev: boolean; file: string })[] = [];
    let found = false;
    for (const [file, dev] of [['requirements.txt', false], ['requirements-build.txt', true]] as const) {
      let text: string;
      try {
        text = await readFile(path.join(dir, file), 'utf8');
      } catch {
        continue;
      }
      found = true;
      for (const r of parseRequirements(text, path.posix.join(rel, file))) reqs.push({ ...r, dev, file });
    }
    if (!found) throw new PmError(`The pip package at "${rel}" has no requirements.txt or requirements-build.txt`);
    const dependencies: Dependency[] = [];
    for (const r of reqs) {
      const project = normalizeName(r.name);
      const page = `${index}/${project}/`;
      const links = await ctx.cache.memo(`pip-links:${page}==${r.version}`, async () =>
        parseSimplePage(await ctx.cache.text(page), page).filter((l) => fileMatches(l.filename, r.name, r.version)),
      );
      const wanted = chooseFiles(links, r.hashes);
      if (!wanted.length) throw new PmError(`${r.file} line ${r.line}: no distribution of ${r.name}==${r.version}${r.hashes.length ? ' with a listed hash' : ''} in the index`);
      let placed = 0;
      for (const l of wanted) {
        if (!/^[A-Za-z0-9._+!-]+$/.test(l.filename)) throw new PmError(`The index lists an invalid file name: ${l.filename}`);
        const got = await ctx.cache.get(l.url, l.url, (_f, d) => {
          if (l.sha256 && d.sha256 !== l.sha256) throw new ChecksumError(`The checksum of pip ${l.filename} does not match the index`);
          if (r.hashes.length && !r.hashes.includes(d.sha256)) throw new ChecksumError(`The checksum of pip ${l.filename} does not match ${r.file} line ${r.line}`);
        });
        const bundlePath = `deps/pip/${l.filename}`;
        if (!files.has(bundlePath)) {
          await ctx.cache.place(got.digests.sha256, path.join(ctx.bundleDir, bundlePath));
          files.set(bundlePath, { pm: 'pip', path: bundlePath, sha256: got.digests.sha256, name: project, version: r.version, integrity: l.filename });
        }
        placed++;
      }
      if (placed) dependencies.push({ name: project, type: 'pip', version: r.version, replaces: null, dev: r.dev });
    }
    const setup = await readFile(path.join(dir, 'setup.py'), 'utf8').catch(() => '');
    const pyproject = await readFile(path.join(dir, 'pyproject.toml'), 'utf8').catch(() => '');
    const name = /name\s*=\s*["']([^"']+)["']/.exec(pyproject)?.[1] ?? /name\s*=\s*["']([^"']+)["']/.exec(setup)?.[1] ?? path.basename(rel === '.' ? ctx.repoName : rel);
    const version = /version\s*=\s*["']([^"']+)["']/.exec(pyproject)?.[1] ?? /version\s*=\s*["']([^"']+)["']/.exec(setup)?.[1] ?? '0.0.0';
    packages.push({ name: normalizeName(name), type: 'pip', version, path: rel, dependencies });
    ctx.log(`pip: ${rel}: ${dependencies.length} dependencies`);
  }
  const env = {
    PIP_FIND_LINKS: { value: 'deps/pip', kind: 'path' as const },
    PIP_NO_INDEX: { value: 'true', kind: 'literal' as const },
  };
  return { packages, env, configFiles: [], files: [...files.values()] };
};
