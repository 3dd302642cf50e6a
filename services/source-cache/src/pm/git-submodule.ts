import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { simpleGit } from 'simple-git';
import { assertGitUrlAllowed, type GitPolicy } from '@dockyard/kit';
import type { PackageResult } from '../domain/types.js';
import { cloneAt, RequestError } from '../worker/source.js';
import { isSafeRelativePath } from '../domain/requests.js';

/** `.gitmodules` entries: name, path, url. */
export function parseGitmodules(text: string): { name: string; path: string; url: string }[] {
  const out: { name: string; path: string; url: string }[] = [];
  let cur: { name: string; path: string; url: string } | null = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const head = /^\[submodule\s+"([^"]+)"\]$/.exec(line);
    if (head) {
      cur = { name: head[1], path: '', url: '' };
      out.push(cur);
      continue;
    }
    const kv = /^(\w+)\s*=\s*(.*)$/.exec(line);
    if (cur && kv && (kv[1] === 'path' || kv[1] === 'url')) cur[kv[1]] = kv[2].trim();
  }
  return out;
}

/**
 * git-submodule: every submodule of `.gitmodules` cloned at the commit the superproject pins,
 * inside `app/<path>`. Each URL passes the same git policy as the request's repository (relative
 * URLs are resolved against it). Runs before the symlink check, so submodule content is checked too.
 */
export async function fetchSubmodules(
  appDir: string,
  repo: string,
  opts: { policy: GitPolicy; timeoutMs: number; maxBytes: number; log: (line: string) => void },
): Promise<PackageResult[]> {
  let text: string;
  try {
    text = await readFile(path.join(appDir, '.gitmodules'), 'utf8');
  } catch {
    return [];
  }
  const packages: PackageResult[] = [];
  const git = simpleGit({ baseDir: appDir });
  for (const sm of parseGitmodules(text)) {
    if (!isSafeRelativePath(sm.path)) throw new RequestError(`The submodule "${sm.name}" has an invalid path "${sm.path}"`);
    const url = sm.url.startsWith('./') || sm.url.startsWith('../') ? new URL(sm.url, repo.endsWith('/') ? repo : `${repo}/`).toString().replace(/\/$/, '') : sm.url;
    await assertGitUrlAllowed(url, opts.policy).catch((err: Error) => {
      throw new RequestError(`The submodule "${sm.name}": ${err.message}`);
    });
    const tree = (await git.raw(['ls-tree', 'HEAD', '--', sm.path])).trim();
    const m = /^160000 commit ([0-9a-f]{40})\t/.exec(tree);
    if (!m) throw new RequestError(`The submodule "${sm.name}" at "${sm.path}" is not pinned to a commit in the repository`);
    opts.log(`git-submodule: cloning ${sm.name} (${url}) at ${m[1]}`);
    await cloneAt(url, m[1], path.join(appDir, sm.path), { timeoutMs: opts.timeoutMs, maxBytes: opts.maxBytes, allowFile: opts.policy.schemes.has('file') });
    packages.push({ name: sm.name, type: 'git-submodule', version: `${url}#${m[1]}`, path: sm.path, dependencies: [] });
  }
  return packages;
}
