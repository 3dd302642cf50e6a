import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** The digests of one artifact, computed in a single pass as it streamed in. */
export interface Digests {
  sha256: string;
  sha512: string;
  sha1: string;
  size: number;
}

interface IndexEntry extends Digests {
  url: string;
}

/** Thrown when an artifact does not match the checksum the lock file gives. */
export class ChecksumError extends Error {}

export interface CacheStats {
  hits: number;
  fetches: number;
}

/**
 * Every artifact fetched from an upstream, kept once by content (sha256) and shared by all
 * requests: `objects/<aa>/<sha256>`, with `index/<sha256 of the artifact id>` naming the object an
 * artifact id (e.g. `npm:left-pad@1.3.0`) resolved to. A second request needing the same artifact
 * reads the index and fetches nothing. Checksums are verified on every use, since two lock files
 * may expect different content for one id; content that fails is never stored.
 */
export class ArtifactCache {
  readonly stats: CacheStats = { hits: 0, fetches: 0 };
  constructor(
    readonly root: string,
    private readonly maxBytes: number,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  objectPath(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error('bad object id');
    return path.join(this.root, 'objects', sha256.slice(0, 2), sha256);
  }

  private indexPath(id: string): string {
    return path.join(this.root, 'index', createHash('sha256').update(id).digest('hex'));
  }

  /**
   * The artifact `id` (its upstream URL: registry artifacts are immutable), from the cache or
   * fetched from `url`; `verify` throws a ChecksumError when the content is not what the lock
   * file expects, on a cache hit too. Returns the object's path and digests.
   */
  async get(id: string, url: string, verify: (file: string, d: Digests) => Promise<void> | void): Promise<{ file: string; digests: Digests; cached: boolean }> {
    const indexFile = this.indexPath(id);
    try {
      const entry = JSON.parse(await readFile(indexFile, 'utf8')) as IndexEntry;
      const file = this.objectPath(entry.sha256);
      await stat(file);
      await verify(file, entry);
      this.stats.hits++;
      return { file, digests: entry, cached: true };
    } catch (err) {
      if (err instanceof ChecksumError) throw err;
    }
    const digests = await this.fetchInto(url, async (tmp, d) => verify(tmp, d));
    await mkdir(path.dirname(indexFile), { recursive: true });
    const tmpIndex = `${indexFile}.${randomUUID()}`;
    await writeFile(tmpIndex, JSON.stringify({ ...digests, url } satisfies IndexEntry));
    await rename(tmpIndex, indexFile);
    return { file: this.objectPath(digests.sha256), digests, cached: false };
  }

  private async fetchInto(url: string, verify: (file: string, d: Digests) => Promise<void>): Promise<Digests> {
    this.stats.fetches++;
    const res = await this.fetchImpl(url, { redirect: 'follow', signal: AbortSignal.timeout(300_000) });
    if (!res.ok || !res.body) throw new Error(`Fetching ${url} failed: HTTP ${res.status}`);
    const tmpDir = path.join(this.root, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const tmp = path.join(tmpDir, randomUUID());
    const h256 = createHash('sha256');
    const h512 = createHash('sha512');
    const h1 = createHash('sha1');
    let size = 0;
    const max = this.maxBytes;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > max) return cb(new Error(`${url} is larger than the limit of ${max} bytes`));
        h256.update(chunk);
        h512.update(chunk);
        h1.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(res.body as never), meter, createWriteStream(tmp));
      const digests: Digests = { sha256: h256.digest('hex'), sha512: h512.digest('base64'), sha1: h1.digest('base64'), size };
      await verify(tmp, digests);
      const target = this.objectPath(digests.sha256);
      await mkdir(path.dirname(target), { recursive: true });
      await rename(tmp, target);
      return digests;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * A small computed fact kept with the cache (e.g. which files of an index page belong to a
   * pinned version), so a warm request asks the upstream nothing at all.
   */
  async memo<T>(id: string, compute: () => Promise<T>): Promise<T> {
    const file = `${this.indexPath(`memo:${id}`)}`;
    try {
      return JSON.parse(await readFile(file, 'utf8')) as T;
    } catch {}
    const value = await compute();
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${randomUUID()}`;
    await writeFile(tmp, JSON.stringify(value));
    await rename(tmp, file);
    return value;
  }

  /** Fetches a small document (an index page, a go.mod listing) without caching it. */
  async text(url: string): Promise<string> {
    this.stats.fetches++;
    const res = await this.fetchImpl(url, { redirect: 'follow', signal: AbortSignal.timeout(60_000) });
    if (!res.ok) throw new Error(`Fetching ${url} failed: HTTP ${res.status}`);
    return res.text();
  }

  /** Copies a cached object to a path in a bundle being assembled. */
  async place(sha256: string, target: string): Promise<void> {
    await mkdir(path.dirname(target), { recursive: true });
    await copyFile(this.objectPath(sha256), target);
  }

  /** Streams an object (package index views). */
  open(sha256: string) {
    return createReadStream(this.objectPath(sha256));
  }
}

/** Verifies an npm/yarn SRI string (`sha512-...`, `sha1-...`, several separated by spaces). */
export function verifySri(integrity: string, d: Digests, what: string): void {
  const ok = integrity
    .trim()
    .split(/\s+/)
    .some((entry) => {
      const [algo, value] = [entry.slice(0, entry.indexOf('-')), entry.slice(entry.indexOf('-') + 1).split('?')[0]];
      if (algo === 'sha512') return value === d.sha512;
      if (algo === 'sha1') return value === d.sha1;
      if (algo === 'sha256') return value === Buffer.from(d.sha256, 'hex').toString('base64');
      return false;
    });
  if (!ok) throw new ChecksumError(`The checksum of ${what} does not match its lock file (${integrity.slice(0, 30)}...)`);
}
