import { createWriteStream } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import tar from 'tar-stream';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { badRequest, hasControlCharacter } from '@dockyard/kit';

/** Limits on an uploaded archive. */
export interface ZipLimits {
  maxEntries: number;
  maxEntryBytes: number;
  maxTotalBytes: number;
}

export interface ZipEntryInfo {
  name: string;
  size: number;
  directory: boolean;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

function open(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    // strictFileNames off: a backslash is reported by our own check below with a clear message.
    yauzl.open(file, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: false }, (err, zip) => (err ? reject(err) : resolve(zip)));
  });
}

/** yauzl's own refusals, in the words the API answers with. */
function describe(err: Error): string {
  const m = /^(absolute path|invalid relative path|invalid characters in fileName): (.*)$/.exec(err.message);
  if (m?.[1] === 'absolute path') return `file: entry "${m[2]}" has an absolute path (entries must stay inside the archive)`;
  if (m?.[1] === 'invalid relative path') return `file: entry "${m[2]}" escapes the archive (zip-slip)`;
  if (m) return `file: entry "${m[2]}" has an invalid name`;
  return `file: not a valid zip archive (${err.message})`;
}

/** Reads every entry's header, refusing what could escape the archive or exceed the limits; returns the entries. */
export async function inspectZip(file: string, limits: ZipLimits): Promise<ZipEntryInfo[]> {
  let zip: yauzl.ZipFile;
  try {
    zip = await open(file);
  } catch (err) {
    throw badRequest(`file: not a zip archive (${(err as Error).message})`);
  }
  try {
    if (zip.entryCount > limits.maxEntries) throw badRequest(`file: the archive has ${zip.entryCount} entries, more than the limit of ${limits.maxEntries}`);
    const entries: ZipEntryInfo[] = [];
    let total = 0;
    const seen = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      zip.on('error', (err: Error) => reject(err instanceof Error && 'statusCode' in err ? err : badRequest(describe(err))));
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        try {
          const name = entry.fileName;
          const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
          if (mode === S_IFLNK) throw badRequest(`file: entry "${name}" is a symbolic link (links are not allowed in the archive)`);
          // A control character (NUL, newline, escape) in a name would end up in logs, tar headers and file names.
          if (hasControlCharacter(name)) throw badRequest(`file: entry ${JSON.stringify(name)} has a control character in its name`);
          if (name.includes('\\')) throw badRequest(`file: entry "${name}" has a backslash in its name`);
          if (name.split('/').some((s) => s === '..')) throw badRequest(`file: entry "${name}" escapes the archive (zip-slip)`);
          const directory = name.endsWith('/');
          const clean = name.replace(/\/+$/, '').replace(/^\.\//, '');
          if (!directory && seen.has(clean)) throw badRequest(`file: entry "${name}" appears twice`);
          seen.add(clean);
          if (entry.uncompressedSize > limits.maxEntryBytes) throw badRequest(`file: entry "${name}" is ${entry.uncompressedSize} bytes, larger than the limit of ${limits.maxEntryBytes}`);
          total += entry.uncompressedSize;
          if (total > limits.maxTotalBytes) throw badRequest(`file: the archive's entries add up to more than the limit of ${limits.maxTotalBytes} bytes`);
          if (clean) entries.push({ name: clean, size: entry.uncompressedSize, directory });
          zip.readEntry();
        } catch (err) {
          reject(err);
        }
      });
      zip.readEntry();
    });
    return entries;
  } finally {
    zip.close();
  }
}

async function streamOf(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) => zip.openReadStream(entry, (err, stream) => (err ? reject(err) : resolve(stream))));
}

async function collect(stream: Readable, max: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > max) throw badRequest(`file: entry "${name}" is larger than ${max} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Walks an archive (already inspected), calling `visit` for each file entry; `visit` may read the
 * entry's stream (it must consume or ignore it before returning).
 */
export async function walkZip(file: string, visit: (name: string, open: () => Promise<Readable>, size: number) => Promise<void>): Promise<void> {
  const zip = await open(file);
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        const name = entry.fileName.replace(/^\.\//, '');
        if (name.endsWith('/')) return zip.readEntry();
        visit(name, () => streamOf(zip, entry), entry.uncompressedSize).then(() => zip.readEntry(), reject);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
}

/**
 * Adds every file of an archive to `out` (except the names in `skip`), each streamed when the
 * writer gets to it. The archive stays open until the returned `close` is called (after the
 * output is written).
 */
export async function copyEntries(file: string, out: ZipWriter, skip: Set<string>): Promise<() => void> {
  const zip = await open(file);
  try {
    const entries: yauzl.Entry[] = [];
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        entries.push(entry);
        zip.readEntry();
      });
      zip.readEntry();
    });
    for (const entry of entries) {
      const name = entry.fileName.replace(/^\.\//, '');
      if (name.endsWith('/') || skip.has(name)) continue;
      out.addLazy(name, () => streamOf(zip, entry));
    }
  } catch (err) {
    zip.close();
    throw err;
  }
  return () => zip.close();
}

/** The contents of small entries (Dockerfile, ree.json, an SBOM) by name; absent names are left out. */
export async function readEntries(file: string, wanted: (name: string) => boolean, maxBytes = 16 * 1024 * 1024): Promise<Map<string, Buffer>> {
  const found = new Map<string, Buffer>();
  await walkZip(file, async (name, openStream) => {
    if (wanted(name)) found.set(name, await collect(await openStream(), maxBytes, name));
  });
  return found;
}

/**
 * The archive as a tar stream (a docker build context), with some entries replaced or added
 * (`replace`: name -> content; null drops the entry). Entries stream one at a time.
 */
export function zipToTar(file: string, replace: Map<string, Buffer | null> = new Map()): Readable {
  const pack = tar.pack();
  void (async () => {
    try {
      await walkZip(file, async (name, openStream, size) => {
        if (replace.has(name)) return;
        const stream = await openStream();
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry({ name, size, mode: 0o644 }, (err) => (err ? reject(err) : resolve()));
          stream.on('error', reject);
          stream.pipe(sink);
        });
      });
      for (const [name, content] of replace) if (content) pack.entry({ name, mode: 0o644 }, content);
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}

/** An output zip being written: add buffers and streams, then `end()`; `stream` is the zip's bytes. */
export class ZipWriter {
  private readonly zip = new yazl.ZipFile();
  readonly stream: Readable;
  constructor() {
    const out = new PassThrough();
    this.zip.outputStream.pipe(out);
    this.stream = out;
  }
  addBuffer(name: string, content: Buffer | string): void {
    this.zip.addBuffer(typeof content === 'string' ? Buffer.from(content) : content, name, { mtime: new Date(0) });
  }
  /** A stream opened only when the zip gets to it. */
  addLazy(name: string, open: () => Promise<Readable>, compress = true): void {
    this.zip.addReadStreamLazy(name, { compress, mtime: new Date(0) }, (cb) => {
      open().then((s) => cb(null, s), (err) => cb(err as Error, undefined as unknown as Readable));
    });
  }
  end(): void {
    this.zip.end();
  }
}

/** Writes a zip of in-memory files to a path (tests, fixtures). */
export async function writeZipFile(target: string, files: Record<string, string | Buffer>): Promise<void> {
  const w = new ZipWriter();
  for (const [name, content] of Object.entries(files)) w.addBuffer(name, content);
  w.end();
  await new Promise<void>((resolve, reject) => w.stream.pipe(createWriteStream(target)).on('finish', resolve).on('error', reject));
}
