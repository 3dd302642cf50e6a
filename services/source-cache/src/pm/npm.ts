import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { verifySri } from '../domain/cache.js';
import type { BundleFile, Dependency, PackageResult } from '../domain/types.js';
import { b64, mapLimit, PmError, type PackageManager } from './types.js';

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  link?: boolean;
  bundled?: boolean;
  inBundle?: boolean;
  name?: string;
  dependencies?: Record<string, LockEntry | string>;
}

interface Lock {
  name?: string;
  version?: string;
  lockfileVersion?: number;
  packages?: Record<string, LockEntry>;
  dependencies?: Record<string, LockEntry>;
}

export const NPM_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9._~-][a-z0-9._~-]*$/i;

/** The name a v2/v3 `packages` key installs: the part after the last `node_modules/`. */
const nameFromKey = (key: string) => key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);

/** Every registry dependency of a lock file (v1 nested `dependencies`, v2/v3 `packages`). */
export function lockDependencies(lock: Lock): { name: string; version: string; resolved?: string; integrity?: string; dev: boolean }[] {
  const out: { name: string; version: string; resolved?: string; integrity?: string; dev: boolean }[] = [];
  if (lock.packages && (lock.lockfileVersion ?? 1) >= 2) {
    for (const [key, e] of Object.entries(lock.packages)) {
      if (!key.includes('node_modules/') || e.link || e.inBundle) continue; // root, workspaces, links, bundled
      out.push({ name: e.name ?? nameFromKey(key), version: e.version ?? '', resolved: e.resolved, integrity: e.integrity, dev: !!e.dev });
    }
  } else {
    const walk = (deps: Record<string, LockEntry> | undefined) => {
      for (const [name, e] of Object.entries(deps ?? {})) {
        if (!e.bundled) out.push({ name, version: e.version ?? '', resolved: e.resolved, integrity: e.integrity, dev: !!e.dev });
        walk(e.dependencies as Record<string, LockEntry> | undefined);
      }
    };
    walk(lock.dependencies);
  }
  return out;
}

/**
 * The lock file with each registry dependency's `resolved` pointing at its tarball in the bundle
 * (`file:` relative to the package directory), so `npm ci --offline` installs from `deps/npm`.
 */
export function offlineLock(lock: Lock, rel: string): Lock {
  const copy = structuredClone(lock);
  const fromPkg = path.posix.relative(path.posix.join('app', rel), 'deps/npm');
  const rewrite = (name: string, e: LockEntry) => {
    if (e.resolved && /^https?:\/\//.test(e.resolved) && e.version) e.resolved = `file:${fromPkg}/${tarballPath(e.name ?? name, e.version)}`;
  };
  if (copy.packages && (copy.lockfileVersion ?? 1) >= 2) {
    for (const [key, e] of Object.entries(copy.packages)) if (key.includes('node_modules/') && !e.link) rewrite(nameFromKey(key), e);
  }
  const walk = (deps: Record<string, LockEntry> | undefined) => {
    for (const [name, e] of Object.entries(deps ?? {})) {
      rewrite(name, e);
      walk(e.dependencies as Record<string, LockEntry> | undefined);
    }
  };
  walk(copy.dependencies);
  return copy;
}

/** The tarball's file name in a registry: `name/-/base-version.tgz` (a scope is not part of the base). */
export const tarballPath = (name: string, version: string) => `${name}/-/${name.split('/').pop()}-${version}.tgz`;

/**
 * npm: reads package-lock.json (or npm-shrinkwrap.json) only, fetches every registry tarball
 * through the cache with its `integrity` checked, and lays them out as deps/npm/<name>/-/<file>.
 * Git and file dependencies are refused (they would need the project's tooling).
 */
export const npm: PackageManager = async (ctx) => {
  const packages: PackageResult[] = [];
  const files = new Map<string, BundleFile>();
  const configFiles = [];
  for (const rel of ctx.paths) {
    const dir = path.join(ctx.appDir, rel);
    let lockText: string;
    let lockName = 'package-lock.json';
    try {
      lockText = await readFile(path.join(dir, lockName), 'utf8');
    } catch {
      try {
        lockName = 'npm-shrinkwrap.json';
        lockText = await readFile(path.join(dir, lockName), 'utf8');
      } catch {
        throw new PmError(`The npm package at "${rel}" has no package-lock.json or npm-shrinkwrap.json`);
      }
    }
    let lock: Lock;
    let pkg: { name?: string; version?: string };
    try {
      lock = JSON.parse(lockText) as Lock;
      pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
    } catch (err) {
      throw new PmError(`The npm package at "${rel}" has an unreadable package.json or lock file: ${(err as Error).message}`);
    }
    const dependencies: Dependency[] = await mapLimit(lockDependencies(lock), 8, async (d) => {
      if (!NPM_NAME.test(d.name) || d.name.split('/').some((s) => s === '.' || s === '..') || !/^[0-9A-Za-z.+-]+$/.test(d.version)) throw new PmError(`The npm dependency name or version "${d.name}@${d.version}" in "${rel}" is invalid`);
      if (!d.version || !d.resolved) throw new PmError(`The npm dependency ${d.name} in "${rel}" has no version or resolved URL`);
      if (!/^https?:\/\//.test(d.resolved) || !d.resolved.endsWith('.tgz')) {
        throw new PmError(`The npm dependency ${d.name}@${d.version} is not from a registry (${d.resolved}); only registry dependencies are supported`);
      }
      if (!d.integrity) throw new PmError(`The npm dependency ${d.name}@${d.version} has no integrity in the lock file`);
      const file = tarballPath(d.name, d.version);
      const url = `${ctx.upstreams.npm.replace(/\/$/, '')}/${file}`;
      const got = await ctx.cache.get(url, url, (_f, dg) => verifySri(d.integrity!, dg, `npm ${d.name}@${d.version}`));
      const bundlePath = `deps/npm/${file}`;
      if (!files.has(bundlePath)) {
        files.set(bundlePath, { pm: 'npm', path: bundlePath, sha256: got.digests.sha256, name: d.name, version: d.version, integrity: d.integrity });
        await ctx.cache.place(got.digests.sha256, path.join(ctx.bundleDir, bundlePath));
      }
      return { name: d.name, type: 'npm', version: d.version, replaces: null, dev: d.dev };
    });
    packages.push({ name: pkg.name ?? lock.name ?? rel, type: 'npm', version: pkg.version ?? lock.version ?? '0.0.0', path: rel, dependencies });
    const npmrc = `registry=${ctx.viewBase}/npm/\n`;
    configFiles.push({ path: path.posix.join('app', rel, '.npmrc'), type: 'base64' as const, content: b64(npmrc) });
    // For builds with no network at all: the lock file with every tarball resolved inside the bundle.
    configFiles.push({ path: path.posix.join('app', rel, lockName), type: 'base64' as const, content: b64(`${JSON.stringify(offlineLock(lock, rel), null, 2)}\n`) });
    ctx.log(`npm: ${rel}: ${dependencies.length} dependencies`);
  }
  const env = {
    CHROMEDRIVER_SKIP_DOWNLOAD: { value: 'true', kind: 'literal' as const },
    CYPRESS_INSTALL_BINARY: { value: '0', kind: 'literal' as const },
    GECKODRIVER_SKIP_DOWNLOAD: { value: 'true', kind: 'literal' as const },
    SKIP_SASS_BINARY_DOWNLOAD_FOR_CI: { value: 'true', kind: 'literal' as const },
  };
  return { packages, env, configFiles, files: [...files.values()] };
};
