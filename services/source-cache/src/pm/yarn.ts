import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ChecksumError, verifySri, type Digests } from '../domain/cache.js';
import type { BundleFile, Dependency, PackageResult } from '../domain/types.js';
import { NPM_NAME, tarballPath } from './npm.js';
import { b64, PmError, readPackageFile, type PackageManager, type PmContext } from './types.js';

interface Locked {
  name: string;
  version: string;
  resolved?: string;
  integrity?: string;
}

/** The package name of a lock file descriptor: `@scope/name@^1`, `name@npm:^1` -> the part before the version `@`. */
const nameOf = (descriptor: string) => descriptor.slice(0, descriptor.indexOf('@', 1));

/** yarn.lock v1 (classic): blocks of `"a@^1", a@~1:` followed by indented `key value` lines. */
export function parseClassicLock(text: string): Locked[] {
  const out: Locked[] = [];
  let current: (Locked & { depth?: boolean }) | null = null;
  for (const raw of text.split(/\r?\n/)) {
    if (!raw.trim() || raw.trimStart().startsWith('#')) continue;
    if (!raw.startsWith(' ')) {
      if (current) out.push(current);
      const first = raw.replace(/:$/, '').split(',')[0].trim().replace(/^"|"$/g, '');
      current = { name: nameOf(first), version: '' };
      continue;
    }
    if (!current) continue;
    if (/^ {4}/.test(raw)) continue; // nested (dependencies) lines
    const m = /^ {2}(\S+)\s+"?([^"]*)"?$/.exec(raw);
    if (!m) continue;
    if (m[1] === 'version') current.version = m[2];
    else if (m[1] === 'resolved') current.resolved = m[2];
    else if (m[1] === 'integrity') current.integrity = m[2];
  }
  if (current) out.push(current);
  return out;
}

/** Berry's yarn.lock (YAML): npm-protocol entries; workspaces and other protocols are not dependencies. */
export function parseBerryLock(text: string): { locked: Locked[]; refused: string[] } {
  const doc = parseYaml(text) as Record<string, { version?: string; resolution?: string; checksum?: string; linkType?: string }>;
  const locked: Locked[] = [];
  const refused: string[] = [];
  for (const [key, e] of Object.entries(doc)) {
    if (key === '__metadata' || !e?.resolution) continue;
    const at = e.resolution.indexOf('@', 1);
    const name = e.resolution.slice(0, at);
    const ref = e.resolution.slice(at + 1);
    if (ref.startsWith('workspace:')) continue;
    if (!ref.startsWith('npm:')) {
      refused.push(e.resolution);
      continue;
    }
    locked.push({ name, version: ref.slice(4) });
  }
  return { locked, refused };
}

/** Classic yarn's `resolved` URL carries the sha1 of the tarball as its fragment. */
function verifyClassic(l: Locked, d: Digests): void {
  if (l.integrity) return verifySri(l.integrity, d, `yarn ${l.name}@${l.version}`);
  const sha1hex = /#([0-9a-f]{40})$/.exec(l.resolved ?? '')?.[1];
  if (!sha1hex) throw new ChecksumError(`The yarn dependency ${l.name}@${l.version} has no integrity or sha1 in yarn.lock`);
  if (Buffer.from(sha1hex, 'hex').toString('base64') !== d.sha1) throw new ChecksumError(`The checksum of yarn ${l.name}@${l.version} does not match yarn.lock`);
}

async function registryIntegrity(ctx: PmContext, name: string, version: string): Promise<string> {
  const registry = ctx.upstreams.npm.replace(/\/$/, '');
  return ctx.cache.memo(`npm-integrity:${registry}:${name}@${version}`, async () => {
    const packument = JSON.parse(await ctx.cache.text(`${registry}/${name.replace('/', '%2f')}`)) as { versions?: Record<string, { dist?: { integrity?: string; shasum?: string } }> };
    const dist = packument.versions?.[version]?.dist;
    if (dist?.integrity) return dist.integrity;
    if (dist?.shasum) return `sha1-${Buffer.from(dist.shasum, 'hex').toString('base64')}`;
    throw new PmError(`The registry has no integrity for ${name}@${version}`);
  });
}

/**
 * yarn: yarn.lock only, classic (v1: `integrity` or the sha1 of `resolved` checked) and Berry
 * (YAML, npm: protocol). Berry's own `checksum` covers yarn's converted cache zip, which only
 * yarn makes; Dockyard checks Berry tarballs against the registry's published integrity instead.
 * Tarballs land in deps/yarn/<name>/-/<file>; `.yarnrc` / `.yarnrc.yml` point at the request's npm view.
 */
export const yarn: PackageManager = async (ctx) => {
  const packages: PackageResult[] = [];
  const files = new Map<string, BundleFile>();
  const configFiles = [];
  const registry = ctx.upstreams.npm.replace(/\/$/, '');
  for (const rel of ctx.paths) {
    const dir = path.join(ctx.appDir, rel);
    const text = await readPackageFile(dir, 'yarn.lock', 'yarn', rel);
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8').catch(() => '{}')) as { name?: string; version?: string };
    const berry = /^__metadata:/m.test(text);
    let locked: Locked[];
    if (berry) {
      const parsed = parseBerryLock(text);
      if (parsed.refused.length) throw new PmError(`The yarn dependencies ${parsed.refused.join(', ')} are not from a registry; only npm: dependencies are supported`);
      locked = parsed.locked;
    } else locked = parseClassicLock(text);
    const seen = new Set<string>();
    const dependencies: Dependency[] = [];
    for (const l of locked) {
      if (seen.has(`${l.name}@${l.version}`)) continue;
      seen.add(`${l.name}@${l.version}`);
      if (!NPM_NAME.test(l.name) || l.name.split('/').some((s) => s === '.' || s === '..') || !/^[0-9A-Za-z.+-]+$/.test(l.version)) {
        throw new PmError(`The yarn dependency "${l.name}@${l.version}" in "${rel}" is invalid`);
      }
      if (!berry && (!l.resolved || !/^https?:\/\//.test(l.resolved))) throw new PmError(`The yarn dependency ${l.name}@${l.version} is not from a registry (${l.resolved})`);
      const file = tarballPath(l.name, l.version);
      const expected = berry ? await registryIntegrity(ctx, l.name, l.version) : undefined;
      const got = await ctx.cache.get(`${registry}/${file}`, `${registry}/${file}`, (_f, d) =>
        expected ? verifySri(expected, d, `yarn ${l.name}@${l.version}`) : verifyClassic(l, d),
      );
      const bundlePath = `deps/yarn/${file}`;
      if (!files.has(bundlePath)) {
        await ctx.cache.place(got.digests.sha256, path.join(ctx.bundleDir, bundlePath));
        files.set(bundlePath, { pm: 'yarn', path: bundlePath, sha256: got.digests.sha256, name: l.name, version: l.version, integrity: `sha512-${got.digests.sha512}` });
      }
      dependencies.push({ name: l.name, type: 'yarn', version: l.version, replaces: null });
    }
    packages.push({ name: pkg.name ?? ctx.repoName, type: 'yarn', version: pkg.version ?? '0.0.0', path: rel, dependencies });
    const view = `${ctx.viewBase}/yarn/`;
    if (berry) configFiles.push({ path: path.posix.join('app', rel, '.yarnrc.yml'), type: 'base64' as const, content: b64(`npmRegistryServer: "${view}"\n`) });
    else configFiles.push({ path: path.posix.join('app', rel, '.yarnrc'), type: 'base64' as const, content: b64(`registry "${view}"\n`) });
    ctx.log(`yarn: ${rel}: ${berry ? 'Berry' : 'classic'} lock file, ${dependencies.length} dependencies`);
  }
  const env = {
    CHROMEDRIVER_SKIP_DOWNLOAD: { value: 'true', kind: 'literal' as const },
    CYPRESS_INSTALL_BINARY: { value: '0', kind: 'literal' as const },
    GECKODRIVER_SKIP_DOWNLOAD: { value: 'true', kind: 'literal' as const },
    SKIP_SASS_BINARY_DOWNLOAD_FOR_CI: { value: 'true', kind: 'literal' as const },
    YARN_ENABLE_GLOBAL_CACHE: { value: 'false', kind: 'literal' as const },
  };
  return { packages, env, configFiles, files: [...files.values()] };
};
