import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { create as createTar } from 'tar';
import { assertGitUrlAllowed, type BlobStore, type GitPolicy } from '@dockyard/kit';
import type { FastifyBaseLogger } from 'fastify';
import { ChecksumError, type ArtifactCache } from '../domain/cache.js';
import type { Requests } from '../domain/requests.js';
import type { BundleFile, ConfigFile, EnvVar, PackageResult } from '../domain/types.js';
import { gomod } from '../pm/gomod.js';
import { npm } from '../pm/npm.js';
import { pip } from '../pm/pip.js';
import { yarn } from '../pm/yarn.js';
import { fetchSubmodules } from '../pm/git-submodule.js';
import { PmError, type PackageManager } from '../pm/types.js';
import { checkSymlinks, cloneAt, packageDir, RequestError } from './source.js';

export const PACKAGE_MANAGERS: Record<string, PackageManager> = { gomod, npm, pip, yarn };

export interface ProcessorOptions {
  requests: Requests;
  blobs: BlobStore;
  cache: ArtifactCache;
  policy: GitPolicy;
  workDir: string;
  upstreams: { npm: string; pypi: string; goproxy: string };
  publicUrl: string;
  cloneTimeoutMs: number;
  maxRepoBytes: number;
  /** Deliveries of one work item before the request ends failed as interrupted. */
  maxAttempts: number;
  log: FastifyBaseLogger;
}

/**
 * The bundle's key in the blob store: one per processing attempt, so an attempt that loses a race
 * (another worker already finished the request) never overwrites the bundle the request points at.
 */
export const bundleKey = (id: number, attempt: string) => `bundles/${id}-${attempt}.tar.gz`;

/** Turns one request into its bundle, packages, environment variables and configuration files. */
export class RequestProcessor {
  constructor(private readonly o: ProcessorOptions) {}

  /**
   * Processes request `id` from the start. `delivery` counts the work item's deliveries: a later
   * one means a previous worker took it and stopped mid-way, so it is done again from scratch
   * (every attempt has its own work dir and bundle key, and only one attempt's outcome is stored).
   * Past `maxAttempts` the request ends failed as interrupted instead.
   */
  async process(id: number, delivery = 1): Promise<void> {
    const row = await this.o.requests.load(id);
    // Already final (a repeat of a finished item): acknowledged without work.
    if (!row || row.state !== 'in_progress') return;
    if (delivery > this.o.maxAttempts) {
      await this.o.requests.fail(id, `The request was interrupted: the workers processing it stopped before finishing, ${this.o.maxAttempts} times. Submit the request again to retry it.`, row.logs);
      return;
    }
    const lines: string[] = [];
    const log = (line: string) => lines.push(`${new Date().toISOString()} ${line}`);
    const attempt = randomUUID();
    const work = path.join(this.o.workDir, `${id}-${attempt}`);
    const bundleDir = path.join(work, 'bundle');
    const appDir = path.join(bundleDir, 'app');
    let outcome: Parameters<Requests['complete']>[1] | null = null;
    let failure: string | null = null;
    try {
      log(`Processing Cachito request ${id}: ${row.repo} at ${row.ref}`);
      if (delivery > 1) log(`Attempt ${delivery} of ${this.o.maxAttempts}: the worker that took this request before stopped before finishing`);
      await assertGitUrlAllowed(row.repo, this.o.policy).catch((err: Error) => {
        throw new RequestError(err.message);
      });
      await mkdir(bundleDir, { recursive: true });
      log('Cloning the repository');
      await cloneAt(row.repo, row.ref, appDir, {
        timeoutMs: this.o.cloneTimeoutMs,
        maxBytes: this.o.maxRepoBytes,
        allowFile: this.o.policy.schemes.has('file'),
      });
      const packages: PackageResult[] = [];
      if (row.pkgManagers.includes('git-submodule')) {
        packages.push(...(await fetchSubmodules(appDir, row.repo, { policy: this.o.policy, timeoutMs: this.o.cloneTimeoutMs, maxBytes: this.o.maxRepoBytes, log })));
        // Submodule checkouts have a `.git` file pointing into the superproject's .git.
        if (!row.flags.includes('include-git-dir')) for (const p of packages) await rm(path.join(appDir, p.path, '.git'), { recursive: true, force: true });
      }
      const removed = await checkSymlinks(appDir, row.flags.includes('remove-unsafe-symlinks'));
      for (const r of removed) log(`Removed the unsafe symlink ${r}`);
      await mkdir(path.join(bundleDir, 'deps'), { recursive: true });

      const env: Record<string, EnvVar> = {};
      const configFiles: ConfigFile[] = [];
      const files: BundleFile[] = [];
      const spec = row.packagesSpec as Record<string, { path: string }[]>;
      for (const pm of row.pkgManagers) {
        if (pm === 'git-submodule') continue;
        const run = PACKAGE_MANAGERS[pm];
        if (!run) throw new RequestError(`The package manager ${pm} is not supported by this worker`);
        const paths = (spec[pm] ?? [{ path: '.' }]).map((p) => p.path);
        for (const p of paths) await packageDir(appDir, p);
        log(`Fetching the ${pm} dependencies`);
        const result = await run({
          requestId: id,
          bundleDir,
          appDir,
          paths,
          cache: this.o.cache,
          upstreams: this.o.upstreams,
          viewBase: `${this.o.publicUrl.replace(/\/$/, '')}/api/v1/requests/${id}/packages`,
          flags: row.flags,
          ref: row.ref,
          repoName: path.basename(row.repo.replace(/\.git$/, '').replace(/\/+$/, '')) || 'app',
          dependencyReplacements: row.dependencyReplacements as never,
          log,
        });
        for (const p of result.packages) {
          const seen = new Map(p.dependencies.map((d) => [`${d.name}\0${d.version}\0${d.replaces?.name ?? ''}`, d]));
          p.dependencies = [...seen.values()].sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
          packages.push(p);
        }
        Object.assign(env, result.env);
        configFiles.push(...result.configFiles);
        files.push(...result.files);
      }
      if (!row.flags.includes('include-git-dir')) await rm(path.join(appDir, '.git'), { recursive: true, force: true });
      log('Creating the bundle');
      const tar = createTar({ gzip: true, cwd: bundleDir, portable: true, follow: false }, ['app', 'deps']);
      const info = await this.o.blobs.put(bundleKey(id, attempt), (tar as unknown as NodeJS.ReadableStream).pipe(new PassThrough()));
      log(`Bundle: ${info.size} bytes, sha256 ${info.sha256}`);
      log(`Done processing Cachito request ${id}`);
      outcome = { packages, env: sortKeys(env), configFiles, files, bundle: { key: info.key, sha256: info.sha256, size: info.size }, logs: lines.join('\n') + '\n' };
    } catch (err) {
      const expected = err instanceof RequestError || err instanceof PmError || err instanceof ChecksumError;
      failure = expected ? (err as Error).message : `Processing failed: ${(err as Error).message}`;
      if (!expected) this.o.log.error({ err, requestId: id }, 'request processing failed');
      log(`Failed: ${failure}`);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    // Stored last: the work item is acknowledged only after this returns. Both moves are conditional
    // on the request still being in progress: if another worker finished it meanwhile (a redelivered
    // or duplicated item), this attempt stores and publishes nothing and drops its own bundle.
    if (outcome) {
      // (If complete() throws, the move may have been committed: the bundle stays.)
      if (!(await this.o.requests.complete(id, outcome))) {
        await this.o.blobs.delete(outcome.bundle.key).catch(() => undefined);
        this.o.log.info({ requestId: id }, 'request already finished by another attempt; result dropped');
      }
    } else if (!(await this.o.requests.fail(id, failure!, lines.join('\n') + '\n'))) {
      this.o.log.info({ requestId: id }, 'request already finished by another attempt; failure dropped');
    }
  }
}

const sortKeys = <T>(o: Record<string, T>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
