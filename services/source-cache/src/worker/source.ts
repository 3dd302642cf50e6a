import { lstat, readdir, readlink, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { simpleGit } from 'simple-git';

/** A failure of the request itself (bad repository, escaping symlink...): its message becomes the state reason. */
export class RequestError extends Error {}

/** Total size in bytes of a directory tree (symlinks counted as links, not followed). */
export async function treeSize(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else total += (await lstat(p)).size;
    }
  };
  await walk(dir);
  return total;
}

/**
 * Clones `repo` and checks out `ref` into `dir`, within a time limit, refusing repositories larger
 * than `maxBytes`. Hooks never run (a fresh clone has none), submodules are not followed here,
 * and `file://` is allowed only when the git policy allowed it upstream of this call.
 */
export async function cloneAt(repo: string, ref: string, dir: string, opts: { timeoutMs: number; maxBytes: number; allowFile: boolean }): Promise<void> {
  // No redirects: a public host must not bounce the clone to an address the git policy refuses.
  const config = ['core.symlinks=true', 'advice.detachedHead=false', `protocol.file.allow=${opts.allowFile ? 'always' : 'never'}`, 'protocol.ext.allow=never', 'http.followRedirects=false'];
  const unsafe = { allowUnsafeProtocolOverride: true };
  // The size limit is watched while the clone runs, so an oversized repository is cut off early.
  const abort = new AbortController();
  let oversized = false;
  const watch = setInterval(() => {
    void treeSize(dir)
      .then((size) => {
        if (size > opts.maxBytes) {
          oversized = true;
          abort.abort();
        }
      })
      .catch(() => undefined);
  }, 1000);
  const git = simpleGit({ timeout: { block: opts.timeoutMs }, config, unsafe, abort: abort.signal });
  try {
    if (repo.startsWith('-')) throw new RequestError('The repository URL is invalid');
    await git.clone(repo, dir, ['--no-checkout', '--quiet']);
    clearInterval(watch);
    const size = await treeSize(dir);
    if (size > opts.maxBytes) throw new RequestError(`The repository is larger than the limit of ${opts.maxBytes} bytes`);
    const inRepo = simpleGit({ baseDir: dir, timeout: { block: opts.timeoutMs }, config, unsafe });
    await inRepo.raw(['checkout', '--quiet', '--force', ref]);
  } catch (err) {
    clearInterval(watch);
    if (err instanceof RequestError) throw err;
    if (oversized) throw new RequestError(`The repository is larger than the limit of ${opts.maxBytes} bytes`);
    const message = (err as Error).message ?? String(err);
    if (/timed out|block timeout/i.test(message)) throw new RequestError(`Cloning the repository took longer than ${opts.timeoutMs / 1000} seconds`);
    if (/reference is not a tree|did not match any|unknown revision|not a valid object/i.test(message)) throw new RequestError(`The ref ${ref} was not found in the repository`);
    throw new RequestError(`Cloning the repository failed: ${message.split('\n')[0]}`);
  }
  const size = await treeSize(dir);
  if (size > opts.maxBytes) throw new RequestError(`The repository is larger than the limit of ${opts.maxBytes} bytes`);
}

/**
 * Symlinks pointing outside the repository (absolutely or through `..`, also via other links)
 * fail the request, or are removed with the `remove-unsafe-symlinks` flag. Returns the removed paths.
 */
export async function checkSymlinks(root: string, remove: boolean): Promise<string[]> {
  const rootReal = await realpath(root);
  const removed: string[] = [];
  const inside = (p: string) => p === rootReal || p.startsWith(rootReal + path.sep);
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(root, p);
      if (e.isDirectory()) {
        if (rel === '.git') continue;
        await walk(p);
      } else if (e.isSymbolicLink()) {
        const target = await readlink(p);
        let resolved = path.resolve(path.dirname(p), target);
        try {
          resolved = await realpath(p);
        } catch {
          // Dangling: judge the literal target.
          resolved = path.resolve(await realpath(path.dirname(p)), target);
        }
        if (!inside(resolved)) {
          if (!remove) throw new RequestError(`The destination of the symlink "${rel}" is outside of the repository`);
          await rm(p);
          removed.push(rel);
        }
      }
    }
  };
  await walk(root);
  return removed;
}

/** The real directory of a package path, which must stay inside the repository (no symlinked escape). */
export async function packageDir(appDir: string, rel: string): Promise<string> {
  const root = await realpath(appDir);
  let real: string;
  try {
    real = await realpath(path.join(appDir, rel));
    if (!(await stat(real)).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new RequestError(`The package path "${rel}" does not exist in the repository`);
  }
  if (real !== root && !real.startsWith(root + path.sep)) throw new RequestError(`The package path "${rel}" is outside of the repository`);
  return real;
}
