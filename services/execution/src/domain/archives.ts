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
