import { readdirSync, writeFileSync, existsSync, lstatSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { jetstream, jetstreamManager, AckPolicy } from '@nats-io/jetstream';
import { nanos } from '@dockyard/kit';
import { testEnv } from '@dockyard/kit/testing';
import { extract } from 'tar';
import { makeRepo, tmpDir } from './fixtures.js';
import { alice, startHarness, type Harness } from './helpers.js';

async function bundleOf(h: Harness, id: number): Promise<string> {
  const dl = await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) });
  expect(dl.statusCode).toBe(200);
  const out = tmpDir('src-bundle-');
  writeFileSync(path.join(out, 'b.tgz'), dl.rawPayload);
  await extract({ file: path.join(out, 'b.tgz'), cwd: out });
  return out;
}

describe('source safety: symlinks, paths, size, refs (source-only requests)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(null, { DOCKYARD_CACHITO_MAX_REPO_MB: '0.25' });
  });
  afterAll(async () => h?.close());
  const run = async (body: Record<string, unknown>) => {
    const res = await h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: { pkg_managers: [], ...body } });
    expect(res.statusCode).toBe(201);
    return h.settle(res.json().id);
  };

  it('refuses symlinks escaping the repository, or removes them with remove-unsafe-symlinks; inner links stay', async () => {
    const repo = makeRepo({ 'README.md': 'hi\n', 'docs/readme': { symlink: '../README.md' }, 'abs': { symlink: '/etc/passwd' }, 'sub/up': { symlink: '../../outside' } });
    const refused = await run({ repo: repo.url, ref: repo.ref });
    expect(refused.state).toBe('failed');
    expect(refused.state_reason).toMatch(/^The destination of the symlink "(abs|sub\/up)" is outside of the repository$/);
    const cleaned = await run({ repo: repo.url, ref: repo.ref, flags: ['remove-unsafe-symlinks'] });
    expect(cleaned.state).toBe('complete');
    const out = await bundleOf(h, cleaned.id as number);
    expect(readdirSync(path.join(out, 'app')).sort()).toEqual(['README.md', 'docs', 'sub']);
    expect(lstatSync(path.join(out, 'app/docs/readme')).isSymbolicLink()).toBe(true);
    expect(existsSync(path.join(out, 'app/sub/up'))).toBe(false);
    expect(readdirSync(path.join(out, 'deps'))).toEqual([]);
  });

  it('keeps .git only with include-git-dir', async () => {
    const repo = makeRepo({ 'a.txt': 'a' });
    const done = await run({ repo: repo.url, ref: repo.ref, flags: ['include-git-dir'] });
    expect(done.state).toBe('complete');
    expect(existsSync(path.join(await bundleOf(h, done.id as number), 'app/.git/HEAD'))).toBe(true);
  });

  it('refuses an oversized repository, an unknown ref and a package path outside the repository', async () => {
    const big = makeRepo({ 'blob.bin': randomBytes(512 * 1024).toString('base64') });
    const tooBig = await run({ repo: big.url, ref: big.ref });
    expect(tooBig).toMatchObject({ state: 'failed', state_reason: `The repository is larger than the limit of ${0.25 * 1024 * 1024} bytes` });
    const repo = makeRepo({ 'a.txt': 'a', 'link': { symlink: '..' } });
    const noRef = await run({ repo: repo.url, ref: 'b'.repeat(40) });
    expect(noRef).toMatchObject({ state: 'failed', state_reason: `The ref ${'b'.repeat(40)} was not found in the repository` });
    const viaLink = await run({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'], packages: { npm: [{ path: 'link' }] }, flags: ['remove-unsafe-symlinks'] });
    expect(viaLink).toMatchObject({ state: 'failed', state_reason: 'The package path "link" does not exist in the repository' });
    const missing = await run({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'], packages: { npm: [{ path: 'nope' }] } });
    expect(missing.state).toBe('failed');
  });
});

describe('a request whose worker is killed mid-way', () => {
  it('is done again from the start by the worker it is redelivered to', async () => {
    const env = testEnv();
    const api = await startHarness(null, { DOCKYARD_ROLE: 'api', DOCKYARD_CACHITO_ACK_WAIT_MS: '3000' }, env);
    let workerApp: Harness | null = null;
    try {
      const repo = makeRepo({ 'a.txt': 'a' });
      const res = await api.app.inject({ method: 'POST', url: '/api/v1/requests', headers: api.headers(alice), payload: { repo: repo.url, ref: repo.ref, pkg_managers: [] } });
      const id = res.json().id;
      // A worker takes the work item and dies without acknowledging it.
      const stream = api.app.subjects.stream('SOURCE_CACHE_WORK');
      await (await jetstreamManager(api.app.nats)).consumers.add(stream, {
        durable_name: 'source-cache-workers',
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(3000),
        max_deliver: 5,
        filter_subject: api.app.subjects.of('work.source-cache.request'),
      });
      const taken = await (await jetstream(api.app.nats).consumers.get(stream, 'source-cache-workers')).next({ expires: 30_000 });
      expect(taken?.json<{ id: number }>()).toEqual({ id });
      // Another worker gets it again after ack_wait and does it from the start.
      workerApp = await startHarness(null, { DOCKYARD_ROLE: 'worker', DOCKYARD_CACHITO_ACK_WAIT_MS: '3000' }, env);
      const done = await api.settle(id);
      expect(done.state).toBe('complete');
      const logs = await api.app.inject({ url: `/api/v1/requests/${id}/logs`, headers: api.headers(alice) });
      expect(logs.body).toContain('Attempt 2 of 3: the worker that took this request before stopped before finishing');
    } finally {
      await workerApp?.close();
      await api.close();
      await env.cleanup();
    }
  }, 120_000);
});
