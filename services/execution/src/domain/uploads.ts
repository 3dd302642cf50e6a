import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import { badRequest, FsBlobStore, HttpError, type BlobStore } from '@dockyard/kit';

/** One attachment as stored: copied to `/inbox/<name>` before the job starts. */
export interface Attachment {
  name: string;
  key: string;
  size: number;
  sha256: string;
}

export interface UploadLimits {
  maxFileBytes: number;
  maxFiles: number;
  maxTotalBytes: number;
  maxExpandedBytes: number;
  maxArchiveEntries: number;
}

/**
 * An attachment name becomes a file directly in `/inbox`: a plain file name only. Names with a
 * path separator, `..`, a NUL or a leading dot-dot are refused rather than silently cleaned, so
 * a client learns its file would not land where it asked.
 */
export function assertAttachmentName(name: string | undefined): string {
  if (!name) throw badRequest('Every attachment needs a file name');
  if (name.length > 255 || /[/\\\0]/.test(name) || name === '.' || name === '..' || name.includes('..')) {
    throw badRequest(`Attachment name ${JSON.stringify(name)} is not allowed: a plain file name without "/", "\\" or ".." is required`);
  }
  return name;
}

/** Passes bytes through, remembering the first four (to recognise a zip). */
class Sniffer extends Transform {
  head = Buffer.alloc(0);
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    if (this.head.length < 4) this.head = Buffer.concat([this.head, chunk.subarray(0, 4 - this.head.length)]);
    cb(null, chunk);
  }
}

/** Collects a job's attachments into the blob store while the request streams in. */
export class AttachmentUpload {
  readonly attachments: Attachment[] = [];
  private total = 0;
  private readonly batch = randomUUID();

  constructor(
    private readonly blobs: BlobStore,
    private readonly limits: UploadLimits,
  ) {}

  async add(filename: string | undefined, file: Readable): Promise<void> {
    let name: string;
    try {
      name = assertAttachmentName(filename);
      if (this.attachments.some((a) => a.name === name)) throw badRequest(`Attachment name ${JSON.stringify(name)} is given twice`);
      if (this.attachments.length >= this.limits.maxFiles) throw new HttpError(413, `At most ${this.limits.maxFiles} attachments are accepted`);
    } catch (err) {
      file.resume();
      throw err;
    }
    const key = `attachments/${this.batch}/${this.attachments.length}`;
    const remaining = this.limits.maxTotalBytes - this.total;
    const sniff = new Sniffer();
    const source = file.pipe(sniff);
    file.once('error', (err) => sniff.destroy(err));
    let info;
    try {
      info = await this.blobs.put(key, source, { maxBytes: Math.min(this.limits.maxFileBytes, remaining) });
    } catch (err) {
      if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE' || (err instanceof HttpError && err.statusCode === 413)) {
        throw new HttpError(413, `Attachment ${JSON.stringify(name)} is too large: at most ${this.limits.maxFileBytes} bytes per file and ${this.limits.maxTotalBytes} in all`);
      }
      throw err;
    }
    this.total += info.size;
    this.attachments.push({ name, key, size: info.size, sha256: info.sha256 });
    if (sniff.head.equals(Buffer.from('PK\x03\x04', 'latin1'))) await this.inspectZip(name, key);
  }

  /** Deletes what was stored (the request failed). */
  async discard(): Promise<void> {
    await Promise.allSettled(this.attachments.map((a) => this.blobs.delete(a.key)));
  }

  /**
   * A zip attachment is refused when it would expand past the limit or holds too many entries or
   * unsafe entry names (zip bombs, zip-slip): the declared sizes are checked first, then every
   * entry is inflated and counted, since a crafted header can lie about its size.
   */
  private async inspectZip(name: string, key: string): Promise<void> {
    await withLocalFile(this.blobs, key, async (file) => {
      const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
        yauzl.open(file, { lazyEntries: true, validateEntrySizes: true, autoClose: true }, (err, z) => (err ? reject(err) : resolve(z))),
      ).catch((err: Error) => {
        throw badRequest(`Attachment ${JSON.stringify(name)} looks like a zip but cannot be read: ${err.message}`);
      });
      const refuse = (why: string) => badRequest(`Attachment ${JSON.stringify(name)} is refused: ${why}`);
      if (zip.entryCount > this.limits.maxArchiveEntries) {
        zip.close();
        throw refuse(`${zip.entryCount} archive entries (at most ${this.limits.maxArchiveEntries})`);
      }
      let expanded = 0;
      await new Promise<void>((resolve, reject) => {
        const fail = (err: Error) => {
          zip.close();
          reject(err instanceof HttpError ? err : refuse(err.message));
        };
        zip.on('error', fail);
        zip.on('end', () => resolve());
        zip.on('entry', (entry: yauzl.Entry) => {
          expanded += entry.uncompressedSize;
          if (expanded > this.limits.maxExpandedBytes) return fail(refuse(`it expands to more than ${this.limits.maxExpandedBytes} bytes`));
          if (entry.fileName.endsWith('/')) return zip.readEntry();
          zip.openReadStream(entry, (err, stream) => {
            if (err) return fail(err);
            // yauzl errors when an entry inflates past its declared size, so the count stays honest.
            stream.on('error', fail);
            stream.on('end', () => zip.readEntry());
            stream.resume();
          });
        });
        zip.readEntry();
      });
    });
  }
}

/** Runs `fn` with a path to the blob on local disk (the filesystem store's own file, else a temp copy). */
async function withLocalFile<T>(blobs: BlobStore, key: string, fn: (file: string) => Promise<T>): Promise<T> {
  if (blobs instanceof FsBlobStore) return fn(path.join(blobs.root, key));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dockyard-zip-'));
  try {
    const file = path.join(dir, 'archive.zip');
    await pipeline(await blobs.get(key), createWriteStream(file));
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
