import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';

/** One installed package as read from an image. */
export interface Pkg {
  type: 'deb' | 'apk' | 'pypi' | 'npm';
  name: string;
  version: string;
  arch?: string | null;
  /** In a Dockerfile's pins: installed as a dependency of what the Dockerfile asked for. */
  dependency?: boolean;
}

export interface OsRelease {
  id: string;
  versionId: string | null;
  codename: string | null;
  prettyName: string | null;
}

export interface ImageContents {
  os: OsRelease | null;
  packages: Pkg[];
  /** The engine's architecture of the image (amd64, arm64...). */
  architecture: string | null;
}

/** Packages are matched by type and name (one architecture per image). */
export const pkgKey = (p: Pkg) => `${p.type}:${p.name}`;

const byKey = (a: Pkg, b: Pkg) => pkgKey(a).localeCompare(pkgKey(b));

// Every package manager the image has, each section marked; a missing one prints nothing.
const INSPECT = [
  "echo '##os'; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null",
  "echo '##dpkg'; command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n' 2>/dev/null",
  "echo '##apk'; command -v apk >/dev/null 2>&1 && apk list --installed 2>/dev/null",
  "echo '##pip'; for py in python3 python; do if command -v $py >/dev/null 2>&1 && $py -m pip --version >/dev/null 2>&1; then $py -m pip list --format=json --disable-pip-version-check 2>/dev/null; break; fi; done",
  "echo '##npm'; command -v npm >/dev/null 2>&1 && npm ls -g --json --depth=0 2>/dev/null",
  "echo '##end'",
].join('\n');

/** Runs a shell script in a fresh container of `image` (removed afterwards); returns its stdout. */
export async function runScript(docker: Docker, image: string, script: string, opts: { network?: boolean; labels?: Record<string, string>; signal?: AbortSignal } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const container = await docker.createContainer({
    Image: image,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [script],
    User: '0',
    Labels: opts.labels,
    NetworkDisabled: !opts.network,
    HostConfig: { NetworkMode: opts.network ? 'bridge' : 'none', Memory: 1024 * 1024 * 1024, PidsLimit: 512 },
  });
  const onAbort = () => void container.remove({ force: true }).catch(() => undefined);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    const out = new PassThrough();
    const err = new PassThrough();
    const chunks: Buffer[] = [];
    const errs: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    err.on('data', (c: Buffer) => errs.push(c));
    docker.modem.demuxStream(stream, out, err);
    const ended = new Promise<void>((resolve) => stream.on('end', resolve));
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise((r) => (grace = setTimeout(r, 2000)))]);
    clearTimeout(grace);
    return { code: StatusCode, stdout: Buffer.concat(chunks).toString('utf8'), stderr: Buffer.concat(errs).toString('utf8') };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await container.remove({ force: true }).catch(() => undefined);
  }
}

function sections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let name = '';
  let body: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^##(\w+)$/.exec(line.trim());
    if (m) {
      if (name) out.set(name, body.join('\n'));
      name = m[1];
      body = [];
    } else body.push(line);
  }
  if (name) out.set(name, body.join('\n'));
  return out;
}

export function parseOsRelease(text: string): OsRelease | null {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) vars.set(m[1], m[2].replace(/^["']|["']$/g, ''));
  }
  const id = vars.get('ID');
  if (!id) return null;
  return { id, versionId: vars.get('VERSION_ID') ?? null, codename: vars.get('VERSION_CODENAME') ?? null, prettyName: vars.get('PRETTY_NAME') ?? null };
}

/** dpkg-query lines (`ii\tname\tversion\tarch`) of installed packages. */
export function parseDpkg(text: string): Pkg[] {
  const out: Pkg[] = [];
  for (const line of text.split('\n')) {
    const [status, name, version, arch] = line.split('\t');
    if (!name || !version || !status?.startsWith('ii')) continue;
    out.push({ type: 'deb', name, version, arch: arch || null });
  }
  return out;
}

function parseApk(text: string): Pkg[] {
  const out: Pkg[] = [];
  for (const line of text.split('\n')) {
    // name-version-rN arch {origin} (license) [installed]
    const m = /^(\S+)-([^-\s]+-r\d+)\s+(\S+)/.exec(line.trim());
    if (m) out.push({ type: 'apk', name: m[1], version: m[2], arch: m[3] });
  }
  return out;
}

function parseJson<T>(text: string): T | null {
  const start = text.search(/[[{]/);
  if (start < 0) return null;
  try {
    return JSON.parse(text.slice(start)) as T;
  } catch {
    return null;
  }
}

/** What an image has installed: its OS and every package dpkg, apk, pip and npm know. */
export async function inspectImage(docker: Docker, image: string, opts: { labels?: Record<string, string>; signal?: AbortSignal } = {}): Promise<ImageContents> {
  const info = await docker.getImage(image).inspect();
  const { stdout, code, stderr } = await runScript(docker, image, INSPECT, opts);
  const parts = sections(stdout);
  if (!parts.has('end')) throw new Error(`Reading the packages of ${image} failed (exit ${code}): ${stderr.trim().slice(0, 500)}`);
  const packages: Pkg[] = [...parseDpkg(parts.get('dpkg') ?? ''), ...parseApk(parts.get('apk') ?? '')];
  for (const p of parseJson<{ name: string; version: string }[]>(parts.get('pip') ?? '') ?? []) packages.push({ type: 'pypi', name: p.name.toLowerCase(), version: p.version });
  const npm = parseJson<{ dependencies?: Record<string, { version?: string }> }>(parts.get('npm') ?? '');
  for (const [name, d] of Object.entries(npm?.dependencies ?? {})) if (d.version) packages.push({ type: 'npm', name, version: d.version });
  packages.sort(byKey);
  return { os: parseOsRelease(parts.get('os') ?? ''), packages, architecture: info.Architecture ?? null };
}

export interface PackageDiff {
  missing: Pkg[];
  unexpected: Pkg[];
  changed: { type: Pkg['type']; name: string; arch?: string | null; recorded: string; found: string }[];
}

/**
 * Compares a rebuilt image's packages with the recorded ones. `exact`: the sets must be equal;
 * `listed`: every recorded package must be there at its version (others may be added).
 */
export function comparePackages(recorded: Pkg[], found: Pkg[], mode: 'exact' | 'listed'): PackageDiff {
  const got = new Map(found.map((p) => [pkgKey(p), p]));
  const want = new Map(recorded.map((p) => [pkgKey(p), p]));
  const diff: PackageDiff = { missing: [], unexpected: [], changed: [] };
  for (const [key, p] of want) {
    const f = got.get(key);
    if (!f) diff.missing.push(p);
    else if (f.version !== p.version) diff.changed.push({ type: p.type, name: p.name, arch: p.arch ?? null, recorded: p.version, found: f.version });
  }
  if (mode === 'exact') for (const [key, p] of got) if (!want.has(key)) diff.unexpected.push(p);
  return diff;
}

export const diffIsEmpty = (d: PackageDiff) => !d.missing.length && !d.unexpected.length && !d.changed.length;

/** The difference in one line per kind, for a failure reason. */
export function describeDiff(d: PackageDiff): string {
  const parts: string[] = [];
  const show = (p: Pkg) => `${p.type}:${p.name}=${p.version}`;
  if (d.changed.length) parts.push(`changed: ${d.changed.map((c) => `${c.type}:${c.name} recorded ${c.recorded}, found ${c.found}`).join('; ')}`);
  if (d.missing.length) parts.push(`missing: ${d.missing.map(show).join(', ')}`);
  if (d.unexpected.length) parts.push(`not recorded: ${d.unexpected.map(show).join(', ')}`);
  return parts.join(' | ');
}
