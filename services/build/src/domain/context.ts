import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { HttpError, badRequest } from '@dockyard/kit';
import { BuildFailure } from './types.js';

export interface ContextLimits {
  maxBytes: number;
  maxFiles: number;
}

/**
 * A relative path that stays inside its root (`directory`, `dockerfile`, attachment names):
 * no absolute paths, no `..` escaping, no NUL. Returns the normalized POSIX path ("." for the root).
 */
export function safeRelativePath(value: string, field: string): string {
  if (value.includes('\0') || /[\r\n]/.test(value)) throw badRequest(`${field} contains invalid characters`);
  if (path.posix.isAbsolute(value) || /^[A-Za-z]:[\\/]/.test(value)) throw badRequest(`${field} "${value}" must be a relative path inside the build context`);
  const normal = path.posix.normalize(value.replace(/\\/g, '/'));
  if (normal === '..' || normal.startsWith('../')) throw badRequest(`${field} "${value}" escapes the build context`);
  return normal.replace(/\/+$/, '') || '.';
}

/** True when `child` is `parent` or inside it (both absolute, resolved). */
export function inside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

interface Entry {
  name: string;
  abs: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mode: number;
  linkname?: string;
}

// Fixed owner and time: the same source gives the same context, whatever the checkout's mtimes.
const MTIME = new Date('2020-01-01T00:00:00Z');

/**
 * Scans a directory to be sent as a build context: refuses symlinks that point outside `repoRoot`
 * (the checkout), enforces the file count and size limits, skips `.git`. Nothing is read yet.
 */
export async function scanContext(contextDir: string, repoRoot: string, limits: ContextLimits): Promise<Entry[]> {
  const root = await realpath(repoRoot);
  let dir: string;
  try {
    dir = await realpath(contextDir);
  } catch {
    throw new BuildFailure(`The context directory ${path.relative(repoRoot, contextDir) || '.'} does not exist in the repository`);
  }
  if (!inside(root, dir)) throw new BuildFailure(`The context directory points outside the repository`);
  const entries: Entry[] = [];
  let bytes = 0;
  const walk = async (abs: string, rel: string): Promise<void> => {
    const names = (await readdir(abs)).sort();
    for (const n of names) {
      if (rel === '' && n === '.git') continue;
      const childAbs = path.join(abs, n);
      const childRel = rel ? `${rel}/${n}` : n;
      const st = await lstat(childAbs);
      if (entries.length >= limits.maxFiles) throw new BuildFailure(`The build context has more than ${limits.maxFiles} files`);
      if (st.isSymbolicLink()) {
        const target = await readlink(childAbs);
        const resolved = path.resolve(path.dirname(childAbs), target);
        if (!inside(root, resolved)) throw new BuildFailure(`Symlink ${childRel} points outside the repository (${target})`);
        entries.push({ name: childRel, abs: childAbs, type: 'symlink', size: 0, mode: 0o777, linkname: target });
      } else if (st.isDirectory()) {
        entries.push({ name: childRel, abs: childAbs, type: 'directory', size: 0, mode: st.mode & 0o7777 });
        await walk(childAbs, childRel);
      } else if (st.isFile()) {
        bytes += st.size;
        if (bytes > limits.maxBytes) throw new BuildFailure(`The build context is larger than ${limits.maxBytes} bytes`);
        entries.push({ name: childRel, abs: childAbs, type: 'file', size: st.size, mode: st.mode & 0o7777 });
      }
      // Sockets, FIFOs and devices are left out: docker cannot use them either.
    }
  };
  await walk(dir, '');
  return entries;
}

/** Streams scanned entries as a tar (one file open at a time). */
export function packEntries(entries: Entry[]): Readable {
  const pack = tar.pack();
  void (async () => {
    try {
      for (const e of entries) {
        const header = { name: e.name, mode: e.mode, mtime: MTIME, uid: 0, gid: 0 };
        if (e.type === 'directory') pack.entry({ ...header, type: 'directory' });
        else if (e.type === 'symlink') pack.entry({ ...header, type: 'symlink', linkname: e.linkname });
        else {
          await new Promise<void>((resolve, reject) => {
            const sink = pack.entry({ ...header, type: 'file', size: e.size }, (err) => (err ? reject(err) : resolve()));
            pipeline(createReadStream(e.abs), sink).catch(reject);
          });
        }
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}

/** Scan + pack a directory. */
export async function packDirectory(contextDir: string, repoRoot: string, limits: ContextLimits): Promise<Readable> {
  return packEntries(await scanContext(contextDir, repoRoot, limits));
}

/**
 * Copies a context tar from an untrusted source to `file`, refusing entries that escape the
 * context (absolute or `..` names, symlinks or hard links pointing outside, devices) and enforcing
 * the limits. Returns the number of entries.
 */
export async function sanitizeTar(input: Readable, file: string, limits: ContextLimits): Promise<number> {
  const extract = tar.extract();
  const pack = tar.pack();
  const out = pipeline(pack as unknown as Readable, createWriteStream(file));
  let count = 0;
  let bytes = 0;
  const fail = (message: string) => new BuildFailure(message);
  const feeding = pipeline(input, extract as unknown as NodeJS.WritableStream).catch((err) => {
    extract.destroy(err);
  });
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const name = h.name.replace(/^\.\/+/, '').replace(/\/+$/, '');
      if (!name) {
        entry.resume();
        continue;
      }
      let normal: string;
      try {
        normal = safeRelativePath(h.name, "Context entry");
      } catch (err) {
        throw fail((err as Error).message);
      }
      if (++count > limits.maxFiles) throw fail(`The build context has more than ${limits.maxFiles} files`);
      if (h.type === 'symlink' || h.type === 'link') {
        const target = h.linkname ?? '';
        const base = h.type === 'symlink' ? path.posix.dirname(normal) : '.';
        const resolved = path.posix.normalize(path.posix.join(base, target));
        if (path.posix.isAbsolute(target) || resolved === '..' || resolved.startsWith('../')) {
          throw fail(`${h.type === 'symlink' ? 'Symlink' : 'Hard link'} ${normal} points outside the build context (${target})`);
        }
      } else if (h.type !== 'file' && h.type !== 'directory' && h.type !== 'contiguous-file') {
        if (h.type === 'pax-header' || h.type === 'pax-global-header') {
          entry.resume();
          continue;
        }
        throw fail(`Context entry ${normal} has an unsupported type (${h.type})`);
      }
      bytes += h.size ?? 0;
      if (bytes > limits.maxBytes) throw fail(`The build context is larger than ${limits.maxBytes} bytes`);
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ ...h, name: normal, type: h.type === 'contiguous-file' ? 'file' : h.type }, (err) => (err ? reject(err) : resolve()));
        pipeline(entry as unknown as Readable, sink).catch(reject);
      });
    }
    pack.finalize();
    await out;
    await feeding;
    return count;
  } catch (err) {
    pack.destroy();
    input.destroy();
    await out.catch(() => undefined);
    if (err instanceof BuildFailure || err instanceof HttpError) throw err;
    throw fail(`The build context is not a valid tar archive: ${(err as Error).message}`);
  }
}

