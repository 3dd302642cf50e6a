import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ArtifactCache } from '../domain/cache.js';
import type { BundleFile, ConfigFile, EnvVar, PackageResult } from '../domain/types.js';

/** What a package manager gets: the checked-out source, where deps go, the shared cache. */
export interface PmContext {
  requestId: number;
  /** The bundle being assembled: `app/` (source) and `deps/`. */
  bundleDir: string;
  appDir: string;
  /** Package paths (relative to app/), validated; ["."] when the request named none. */
  paths: string[];
  cache: ArtifactCache;
  upstreams: { npm: string; pypi: string; goproxy: string };
  /** The per-request package index views (what configuration files point to). */
  viewBase: string;
  flags: string[];
  ref: string;
  /** The repository's name (last path segment without .git), for packages with no name of their own. */
  repoName: string;
  dependencyReplacements: { name: string; type: string; version: string; new_name?: string }[];
  log: (line: string) => void;
}

export interface PmResult {
  packages: PackageResult[];
  env: Record<string, EnvVar>;
  configFiles: ConfigFile[];
  files: BundleFile[];
}

export type PackageManager = (ctx: PmContext) => Promise<PmResult>;

/** A package manager's error that fails the request with its message as the reason. */
export class PmError extends Error {}

/** The text of a package's manifest or lock file; a missing one fails the request naming it. */
export async function readPackageFile(dir: string, file: string, pm: string, rel: string): Promise<string> {
  try {
    return await readFile(path.join(dir, file), 'utf8');
  } catch {
    throw new PmError(`The ${pm} package at "${rel}" has no ${file}`);
  }
}

export const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Runs `fn` over `items` with at most `limit` in flight (fetching dependencies in parallel). */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
