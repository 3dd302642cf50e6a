import { constants, createReadStream } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import yazl from 'yazl';
import type { BlobStore } from '@dockyard/kit';
import type { Attachment } from './uploads.js';

/**
 * The tar put into a job's container at `/`: `inbox/` with every attachment and an empty `outbox/`
 * (both writable by any user, so images that run as non-root can write their results). Streamed
 * from the blob store, never held in memory.
 */
export function inboxTar(blobs: BlobStore, attachments: Attachment[]): Readable {
  const pack = tar.pack();
  const now = new Date();
  void (async () => {
    try {
      for (const dir of ['inbox/', 'outbox/']) {
        await new Promise<void>((resolve, reject) => pack.entry({ name: dir, type: 'directory', mode: 0o777, mtime: now }, (err) => (err ? reject(err) : resolve())));
      }
      for (const a of attachments) {
        const body = await blobs.get(a.key);
        const entry = pack.entry({ name: `inbox/${a.name}`, size: a.size, mode: 0o644, mtime: now });
        await pipeline(body, entry);
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}

/**
 * Turns the tar the engine gives for `/outbox` into the zip Kabuto served and stores it. Regular
 * files and directories are kept (paths relative to `/outbox`); links and devices are left out.
 * Returns the stored size.
 */
export async function storeOutboxZip(blobs: BlobStore, key: string, outbox: Readable | null, maxBytes: number): Promise<number> {
  const zip = new yazl.ZipFile();
  const stored = blobs.put(key, zip.outputStream as unknown as Readable, { maxBytes });
  if (!outbox) {
    zip.end();
    return (await stored).size;
  }
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const rel = header.name.replace(/^\/?outbox\/?/, '').replace(/\/$/, '');
    stream.on('end', () => next());
    if (rel && !rel.split('/').includes('..')) {
      if (header.type === 'directory') zip.addEmptyDirectory(rel, { mtime: header.mtime ?? new Date() });
      else if (header.type === 'file') {
        const body = new PassThrough();
        zip.addReadStream(body, rel, { mtime: header.mtime ?? new Date(), mode: header.mode ?? 0o644 });
        stream.pipe(body);
        return;
      }
    }
    stream.resume();
  });
  const extracted = pipeline(outbox, extract).then(
    () => zip.end(),
    (err: Error) => {
      (zip.outputStream as unknown as PassThrough).destroy(err);
      throw err;
    },
  );
  const [, info] = await Promise.all([extracted, stored]);
  return info.size;
}

/** What `resultKey` holds for a job whose `/outbox` was empty: no blob is stored for it. */
export const EMPTY_RESULT = '-';
/** A zip with no entries (only its end-of-central-directory record). */
export const EMPTY_ZIP = Buffer.concat([Buffer.from('PK\x05\x06', 'latin1'), Buffer.alloc(18)]);

/**
 * Zips a job's `/outbox` straight from the host directory bind-mounted there. Only regular files
 * and directories are taken, never followed links (a job could point a link at a host file), and
 * every file is opened with O_NOFOLLOW; the container has exited, so nothing changes meanwhile.
 */
export async function storeOutboxDirZip(blobs: BlobStore, key: string, dir: string, maxBytes: number): Promise<number> {
  const zip = new yazl.ZipFile();
  const stored = blobs.put(key, zip.outputStream as unknown as Readable, { maxBytes });
  try {
    const walk = async (rel: string): Promise<void> => {
      const entries = await readdir(path.join(dir, rel), { withFileTypes: true });
      entries.sort((a, b) => a.name.localeCompare(b.name));
      for (const e of entries) {
        const name = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          zip.addEmptyDirectory(name);
          await walk(name);
        } else if (e.isFile()) {
          zip.addReadStreamLazy(name, {}, (cb) => {
            open(path.join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW).then(
              (fh) => cb(null, createReadStream('', { fd: fh.fd })),
              (err: Error) => cb(err, null as never),
            );
          });
        }
      }
    };
    await walk('');
    zip.end();
  } catch (err) {
    (zip.outputStream as unknown as PassThrough).destroy(err as Error);
  }
  return (await stored).size;
}
