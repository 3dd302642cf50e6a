import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { FsBlobStore } from '../src/index.js';

function* chunks(count: number, size: number) {
  for (let i = 0; i < count; i++) yield Buffer.alloc(size, i % 256);
}

describe('filesystem blob store', () => {
  let root: string;
  let store: FsBlobStore;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'dockyard-blobs-'));
    store = new FsBlobStore(root);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('streams content in, recording size and sha256, and streams it back', async () => {
    const expected = createHash('sha256');
    for (const c of chunks(64, 64 * 1024)) expected.update(c);
    const info = await store.put('jobs/j1/result.zip', Readable.from(chunks(64, 64 * 1024)));
    expect(info).toEqual({ key: 'jobs/j1/result.zip', size: 64 * 64 * 1024, sha256: expected.digest('hex') });
    expect(await store.stat('jobs/j1/result.zip')).toEqual(info);
    const back = createHash('sha256');
    for await (const c of await store.get('jobs/j1/result.zip')) back.update(c as Buffer);
    expect(back.digest('hex')).toBe(info.sha256);
  });

  it('replaces content under a key atomically and deletes it', async () => {
    await store.put('a', Readable.from(['one']));
    await store.put('a', Readable.from(['two']));
    expect(await text(await store.get('a'))).toBe('two');
    await store.delete('a');
    expect(await store.stat('a')).toBeNull();
    await expect(store.get('a')).rejects.toMatchObject({ statusCode: 404 });
  });

  it.each(['../escape', '/abs', 'a/../../b', 'a//b', '', 'a/./b', 'x.meta', 'sp ace'])('refuses the key %j', async (key) => {
    await expect(store.put(key, Readable.from(['x']))).rejects.toMatchObject({ statusCode: 400 });
  });

  it('stops at the size limit with 413 and leaves nothing behind', async () => {
    await expect(store.put('big', Readable.from(chunks(10, 1024)), { maxBytes: 4096 })).rejects.toMatchObject({ statusCode: 413 });
    expect(readdirSync(root)).toEqual([]);
    expect(await store.stat('big')).toBeNull();
  });
});
