import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { safeRelativePath, sanitizeTar, scanContext } from '../src/domain/context.js';

const limits = { maxBytes: 1000, maxFiles: 10 };

function tarOf(entries: tar.Headers[]): Readable {
  const pack = tar.pack();
  for (const h of entries) pack.entry(h, h.type === 'file' || !h.type ? 'x'.repeat(h.size ?? 1) : undefined);
  pack.finalize();
  return pack as unknown as Readable;
}

describe('build contexts: paths, limits, symlinks (unit, real files)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dockyard-ctx-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('normalizes relative paths and refuses escaping ones', () => {
    expect(safeRelativePath('.', 'd')).toBe('.');
    expect(safeRelativePath('app/', 'd')).toBe('app');
    expect(safeRelativePath('a/../b/./Dockerfile', 'd')).toBe('b/Dockerfile');
    for (const bad of ['../x', '/etc', 'a/../../x', '..', 'C:\\x', 'a\0b', '..\\x']) expect(() => safeRelativePath(bad, 'd')).toThrow(/d /);
  });

  it('scans a checkout: skips .git, keeps symlinks inside, refuses symlinks outside and the limits', async () => {
    const repo = path.join(dir, 'repo');
    await mkdir(path.join(repo, '.git'), { recursive: true });
    await mkdir(path.join(repo, 'ctx/sub'), { recursive: true });
    await writeFile(path.join(repo, '.git/config'), 'x');
    await writeFile(path.join(repo, 'ctx/Dockerfile'), 'FROM scratch\n');
    await writeFile(path.join(repo, 'shared.txt'), 'shared');
    await symlink('../shared.txt', path.join(repo, 'ctx/sub/../shared-link'));
    const entries = await scanContext(path.join(repo, 'ctx'), repo, limits);
    expect(entries.map((e) => [e.name, e.type])).toEqual([
      ['Dockerfile', 'file'],
      ['shared-link', 'symlink'],
      ['sub', 'directory'],
    ]);
    expect((await scanContext(repo, repo, limits)).some((e) => e.name.startsWith('.git'))).toBe(false);

    await symlink('../../../etc/passwd', path.join(repo, 'ctx/sub/passwd'));
    await expect(scanContext(path.join(repo, 'ctx'), repo, limits)).rejects.toThrow('Symlink sub/passwd points outside the repository (../../../etc/passwd)');
    await rm(path.join(repo, 'ctx/sub/passwd'));
    await symlink('/', path.join(repo, 'rootlink'));
    await expect(scanContext(path.join(repo, 'rootlink'), repo, limits)).rejects.toThrow('The context directory points outside the repository');
    await expect(scanContext(path.join(repo, 'missing'), repo, limits)).rejects.toThrow('does not exist');
    await writeFile(path.join(repo, 'ctx/big'), 'x'.repeat(2000));
    await expect(scanContext(path.join(repo, 'ctx'), repo, limits)).rejects.toThrow('larger than 1000 bytes');
    await rm(path.join(repo, 'ctx/big'));
    for (let i = 0; i < 10; i++) await writeFile(path.join(repo, `ctx/f${i}`), 'x');
    await expect(scanContext(path.join(repo, 'ctx'), repo, limits)).rejects.toThrow('more than 10 files');
  });

  it('re-packs an untrusted tar, refusing escapes, devices and the limits', async () => {
    const out = path.join(dir, 'out.tar');
    expect(await sanitizeTar(tarOf([{ name: './Dockerfile', size: 3 }, { name: 'a/', type: 'directory' }, { name: 'a/l', type: 'symlink', linkname: '../Dockerfile' }]), out, limits)).toBe(3);
    const cases: [tar.Headers[], string][] = [
      [[{ name: '/etc/x', size: 1 }], 'must be a relative path'],
      [[{ name: 'a/../../x', size: 1 }], 'escapes the build context'],
      [[{ name: 'h', type: 'link', linkname: '../outside' }], 'Hard link h points outside the build context'],
      [[{ name: 'd', type: 'character-device' }], 'unsupported type'],
      [[{ name: 'big', size: 1001 }], 'larger than 1000 bytes'],
      [Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, size: 1 })), 'more than 10 files'],
    ];
    for (const [entries, message] of cases) await expect(sanitizeTar(tarOf(entries), out, limits)).rejects.toThrow(message);
  });
});
