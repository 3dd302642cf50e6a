import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HttpError, badRequest, notFound } from './errors.js';

export interface BlobInfo {
  key: string;
  size: number;
  /** Hex sha256 of the content, computed while it streamed in. */
  sha256: string;
}

/** Where large files live (bundles, attachments, results, logs, image tars). Always streamed. */
export interface BlobStore {
  put(key: string, body: Readable, opts?: { maxBytes?: number }): Promise<BlobInfo>;
  get(key: string): Promise<Readable>;
  stat(key: string): Promise<BlobInfo | null>;
  delete(key: string): Promise<void>;
}

const KEY = /^[A-Za-z0-9_-][A-Za-z0-9._-]*(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$/;

/** Refuses keys that could leave the store: absolute, `..`, empty segments, odd characters. */
export function assertBlobKey(key: string): void {
  if (!KEY.test(key) || key.split('/').some((s) => s === '..' || s === '.') || key.endsWith('.meta')) {
    throw badRequest(`Invalid blob key "${key}"`);
  }
}

/** Counts and hashes bytes as they pass, failing once a limit is crossed. */
class Meter extends Transform {
  size = 0;
  private readonly hash = createHash('sha256');
  constructor(private readonly maxBytes: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.size += chunk.length;
    if (this.size > this.maxBytes) return cb(new HttpError(413, `Content exceeds the limit of ${this.maxBytes} bytes`));
    this.hash.update(chunk);
    cb(null, chunk);
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** Blobs as files under one directory; a write lands under its key only once complete. */
export class FsBlobStore implements BlobStore {
  constructor(readonly root: string) {}

  private file(key: string): string {
    assertBlobKey(key);
    return path.join(this.root, key);
  }

  async put(key: string, body: Readable, opts: { maxBytes?: number } = {}): Promise<BlobInfo> {
    const target = this.file(key);
    await mkdir(path.dirname(target), { recursive: true });
    const tmp = path.join(path.dirname(target), `.tmp-${randomUUID()}`);
    const meter = new Meter(opts.maxBytes ?? Number.MAX_SAFE_INTEGER);
    try {
      await pipeline(body, meter, createWriteStream(tmp));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    const info: BlobInfo = { key, size: meter.size, sha256: meter.digest() };
    await writeFile(`${target}.meta`, JSON.stringify(info));
    await rename(tmp, target);
    return info;
  }

  async get(key: string): Promise<Readable> {
    const file = this.file(key);
    const stream = createReadStream(file);
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? notFound(`Blob ${key} not found`) : err));
    });
    return stream;
  }

  async stat(key: string): Promise<BlobInfo | null> {
    try {
      return JSON.parse(await readFile(`${this.file(key)}.meta`, 'utf8')) as BlobInfo;
    } catch {
      return null;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.file(key);
    await rm(file, { force: true });
    await rm(`${file}.meta`, { force: true });
  }
}
