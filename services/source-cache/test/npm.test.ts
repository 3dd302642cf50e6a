import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { extract } from 'tar';
import { makeRepo, Upstream, tmpDir } from './fixtures.js';
import { alice, bob, cycloneDxErrors, startHarness, type Harness } from './helpers.js';

const golden = (name: string) => path.join(path.dirname(new URL(import.meta.url).pathname), 'golden', name);

/** Replaces what differs between runs (ids, URLs of the local upstream, commits, times) in a document. */
function normalize(value: unknown, subs: [string, string][]): unknown {
  let text = JSON.stringify(value);
  for (const [from, to] of subs) text = text.split(from).join(to);
  return JSON.parse(text);
}

function expectGolden(name: string, actual: unknown): void {
  const file = golden(name);
  if (process.env.UPDATE_GOLDEN) writeFileSync(file, `${JSON.stringify(actual, null, 2)}\n`);
  expect(actual).toEqual(JSON.parse(readFileSync(file, 'utf8')));
}

describe('npm requests (local registry upstream, real git, PostgreSQL, NATS)', () => {
  let upstream: Upstream;
  let h: Harness;
  let lockV3: Record<string, unknown>;
  const deps: Record<string, { version: string; resolved: string; integrity: string }> = {};

  beforeAll(async () => {
    upstream = await new Upstream().start();
    deps['left-pad'] = await upstream.npm('left-pad', '1.3.0');
    deps['@scope/util'] = await upstream.npm('@scope/util', '2.0.1');
    deps['dev-only'] = await upstream.npm('dev-only', '0.1.0');
    lockV3 = {
      name: 'web',
      version: '1.0.0',
      lockfileVersion: 3,
      requires: true,
      packages: {
        '': { name: 'web', version: '1.0.0', dependencies: { 'left-pad': '^1.3.0', '@scope/util': '2.0.1' }, devDependencies: { 'dev-only': '0.1.0' } },
        'node_modules/left-pad': deps['left-pad'],
        'node_modules/@scope/util': deps['@scope/util'],
        'node_modules/dev-only': { ...deps['dev-only'], dev: true },
      },
    };
    h = await startHarness(upstream);
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.stop();
  });

  const create = async (body: Record<string, unknown>, who = alice) => h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(who), payload: body });

  it('fetches a v3 lock file into the bundle, with env vars, .npmrc, content manifest and SBOM; a second request hits only the cache', async () => {
    const repo = makeRepo({ 'package.json': JSON.stringify({ name: 'web', version: '1.0.0' }), 'package-lock.json': JSON.stringify(lockV3), 'index.js': 'console.log(1)\n' });
    const res = await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'] });
    expect(res.statusCode).toBe(201);
    const created = res.json();
    expect(created).toMatchObject({ repo: repo.url, ref: repo.ref, state: 'in_progress', pkg_managers: ['npm'], user: 'alice' });
    const done = await h.settle(created.id);
    expect(done).toMatchObject({ state: 'complete', state_reason: 'Completed successfully' });
    expect((done.state_history as { state: string }[]).map((s) => s.state)).toEqual(['complete', 'in_progress']);
    expect(done.packages).toEqual([
      {
        name: 'web',
        type: 'npm',
        version: '1.0.0',
        dependencies: [
          { name: '@scope/util', type: 'npm', version: '2.0.1', replaces: null },
          { name: 'dev-only', type: 'npm', version: '0.1.0', replaces: null },
          { name: 'left-pad', type: 'npm', version: '1.3.0', replaces: null },
        ],
      },
    ]);
    expect(upstream.count('/npm/')).toBe(3);

    const env = await h.app.inject({ url: `/api/v1/requests/${created.id}/environment-variables`, headers: h.headers(alice) });
    expect(env.json()).toEqual({
      CHROMEDRIVER_SKIP_DOWNLOAD: { value: 'true', kind: 'literal' },
      CYPRESS_INSTALL_BINARY: { value: '0', kind: 'literal' },
      GECKODRIVER_SKIP_DOWNLOAD: { value: 'true', kind: 'literal' },
      SKIP_SASS_BINARY_DOWNLOAD_FOR_CI: { value: 'true', kind: 'literal' },
    });
    const files = (await h.app.inject({ url: `/api/v1/requests/${created.id}/configuration-files`, headers: h.headers(alice) })).json();
    expect(files[0]).toEqual({ path: 'app/.npmrc', type: 'base64', content: Buffer.from(`registry=https://dockyard.test/api/v1/requests/${created.id}/packages/npm/\n`).toString('base64') });
    // The offline lock file: every tarball resolved inside the bundle.
    expect(files[1].path).toBe('app/package-lock.json');
    const offline = JSON.parse(Buffer.from(files[1].content, 'base64').toString());
    expect(offline.packages['node_modules/@scope/util']).toEqual({ ...deps['@scope/util'], resolved: 'file:../deps/npm/@scope/util/-/util-2.0.1.tgz' });
    expect(offline.packages['node_modules/dev-only'].resolved).toBe('file:../deps/npm/dev-only/-/dev-only-0.1.0.tgz');

    // The bundle: app/ without .git, deps/npm/<name>/-/<file>; Digest header is the bundle's sha256.
    const dl = await h.app.inject({ url: `/api/v1/requests/${created.id}/download`, headers: h.headers(alice) });
    expect(dl.statusCode).toBe(200);
    expect(dl.headers.digest).toBe(`sha-256=${createHash('sha256').update(dl.rawPayload).digest('base64')}`);
    const out = tmpDir('bundle-');
    writeFileSync(path.join(out, 'b.tgz'), dl.rawPayload);
    await extract({ file: path.join(out, 'b.tgz'), cwd: out });
    expect(readdirSync(path.join(out, 'app')).sort()).toEqual(['index.js', 'package-lock.json', 'package.json']);
    expect(readdirSync(path.join(out, 'deps/npm')).sort()).toEqual(['@scope', 'dev-only', 'left-pad']);
    expect(createHash('sha512').update(readFileSync(path.join(out, 'deps/npm/left-pad/-/left-pad-1.3.0.tgz'))).digest('base64')).toBe(deps['left-pad'].integrity.slice(7));

    const subs: [string, string][] = [[repo.url, 'REPO'], [encodeURIComponent(repo.url), 'REPO'], [repo.ref, 'REF'], [`"${done.updated}`, '"UPDATED']];
    const icm = (await h.app.inject({ url: `/api/v1/requests/${created.id}/content-manifest`, headers: h.headers(alice) })).json();
    expectGolden('npm-content-manifest.json', normalize(icm, subs));
    const sbom = (await h.app.inject({ url: `/api/v1/requests/${created.id}/sbom`, headers: h.headers(alice) })).json();
    expect(await cycloneDxErrors(sbom)).toBeNull();
    expect(sbom.metadata.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    sbom.metadata.timestamp = 'TIMESTAMP';
    sbom.serialNumber = 'SERIAL';
    expectGolden('npm-sbom.json', normalize(sbom, subs));

    // The npm registry view of this request serves its packuments and tarballs from the cache.
    const packument = (await h.app.inject({ url: `/api/v1/requests/${created.id}/packages/npm/@scope%2futil`, headers: h.headers(alice) })).json();
    expect(packument.versions['2.0.1'].dist).toEqual({ tarball: `https://dockyard.test/api/v1/requests/${created.id}/packages/npm/@scope/util/-/util-2.0.1.tgz`, integrity: deps['@scope/util'].integrity });
    const tgz = await h.app.inject({ url: `/api/v1/requests/${created.id}/packages/npm/@scope/util/-/util-2.0.1.tgz`, headers: h.headers(alice) });
    expect(`sha512-${createHash('sha512').update(tgz.rawPayload).digest('base64')}`).toBe(deps['@scope/util'].integrity);

    // Same dependencies again: nothing fetched upstream.
    const again = await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'] });
    expect((await h.settle(again.json().id)).state).toBe('complete');
    expect(upstream.count('/npm/')).toBe(3);
    expect(h.app.sourceCache.cache.stats.hits).toBeGreaterThanOrEqual(3);
    // Two requests' manifests merge by purl.
    const merged = (await h.app.inject({ url: `/api/v1/content-manifest?requests=${created.id},${again.json().id}`, headers: h.headers(alice) })).json();
    expect(merged).toEqual(icm);

    // Another user cannot see it.
    expect((await h.app.inject({ url: `/api/v1/requests/${created.id}`, headers: h.headers(bob) })).statusCode).toBe(404);
    expect((await h.app.inject({ url: `/api/v1/requests/${created.id}/download`, headers: h.headers(bob) })).statusCode).toBe(404);
  }, 120_000);

  it('installs with `npm ci --offline` from the bundle and its configuration files alone', async () => {
    const lock = structuredClone(lockV3) as { packages: Record<string, Record<string, unknown>> };
    const repo = makeRepo({
      'package.json': JSON.stringify({ name: 'web', version: '1.0.0', dependencies: { 'left-pad': '^1.3.0', '@scope/util': '2.0.1' }, devDependencies: { 'dev-only': '0.1.0' } }),
      'package-lock.json': JSON.stringify(lock),
    });
    const id = (await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'] })).json().id;
    expect((await h.settle(id)).state).toBe('complete');
    const out = tmpDir('npm-offline-');
    writeFileSync(path.join(out, 'b.tgz'), (await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) })).rawPayload);
    await extract({ file: path.join(out, 'b.tgz'), cwd: out });
    for (const f of (await h.app.inject({ url: `/api/v1/requests/${id}/configuration-files`, headers: h.headers(alice) })).json()) {
      writeFileSync(path.join(out, f.path), Buffer.from(f.content, 'base64'));
    }
    // No registry reachable: an unroutable one, --offline, a fresh npm cache.
    execFileSync('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--registry=http://127.0.0.1:9/', `--cache=${path.join(out, '.npm-cache')}`], { cwd: path.join(out, 'app'), stdio: 'pipe', timeout: 90_000 });
    expect(readFileSync(path.join(out, 'app/node_modules/@scope/util/index.js'), 'utf8')).toContain('@scope/util@2.0.1');
    expect(readFileSync(path.join(out, 'app/node_modules/left-pad/package.json'), 'utf8')).toContain('1.3.0');
  }, 120_000);

  it('reads v1 and v2 lock files and a package in a subdirectory', async () => {
    const v1 = { name: 'old', version: '0.1.0', lockfileVersion: 1, dependencies: { 'left-pad': deps['left-pad'], '@scope/util': { ...deps['@scope/util'], dependencies: { 'dev-only': { ...deps['dev-only'], dev: true } } } } };
    const v2 = { ...lockV3, lockfileVersion: 2, dependencies: {} };
    const repo = makeRepo({
      'a/package.json': JSON.stringify({ name: 'old', version: '0.1.0' }),
      'a/package-lock.json': JSON.stringify(v1),
      'b/package.json': JSON.stringify({ name: 'web', version: '1.0.0' }),
      'b/package-lock.json': JSON.stringify(v2),
    });
    const res = await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'], packages: { npm: [{ path: 'a' }, { path: 'b' }] } });
    const done = await h.settle(res.json().id);
    expect(done.state).toBe('complete');
    const pkgs = done.packages as { name: string; dependencies: { name: string }[] }[];
    expect(pkgs.map((p) => [p.name, p.dependencies.map((d) => d.name).sort()])).toEqual([
      ['old', ['@scope/util', 'dev-only', 'left-pad']],
      ['web', ['@scope/util', 'dev-only', 'left-pad']],
    ]);
    const files = (await h.app.inject({ url: `/api/v1/requests/${res.json().id}/configuration-files`, headers: h.headers(alice) })).json();
    expect(files.map((f: { path: string }) => f.path)).toEqual(['app/a/.npmrc', 'app/a/package-lock.json', 'app/b/.npmrc', 'app/b/package-lock.json']);
    const v1Offline = JSON.parse(Buffer.from(files[1].content, 'base64').toString());
    expect(v1Offline.dependencies['@scope/util'].dependencies['dev-only'].resolved).toBe('file:../../deps/npm/dev-only/-/dev-only-0.1.0.tgz');
  });

  it('fails a request whose lock file integrity does not match the tarball, and does not cache it', async () => {
    await upstream.npm('tampered', '1.0.0');
    const other = await upstream.npm('other', '1.0.0');
    const lock = { name: 'x', version: '1.0.0', lockfileVersion: 3, packages: { '': {}, 'node_modules/tampered': { version: '1.0.0', resolved: 'https://registry.npmjs.org/tampered/-/tampered-1.0.0.tgz', integrity: other.integrity } } };
    const repo = makeRepo({ 'package.json': '{"name":"x","version":"1.0.0"}', 'package-lock.json': JSON.stringify(lock) });
    const res = await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'] });
    const done = await h.settle(res.json().id);
    expect(done).toMatchObject({ state: 'failed' });
    expect(done.state_reason).toMatch(/checksum of npm tampered@1\.0\.0 does not match/);
    const logs = await h.app.inject({ url: `/api/v1/requests/${res.json().id}/logs`, headers: h.headers(alice) });
    expect(logs.headers['content-type']).toMatch(/text\/plain/);
    expect(logs.body).toMatch(/Failed: The checksum/);
    expect((await h.app.inject({ url: `/api/v1/requests/${res.json().id}/download`, headers: h.headers(alice) })).json()).toEqual({
      error: 'The request must be in the "complete" state before downloading the archive',
    });
    expect((await h.app.inject({ url: `/api/v1/requests/${res.json().id}/content-manifest`, headers: h.headers(alice) })).json()).toEqual({
      error: 'Content manifests are only available for requests in the "complete" or "stale" states',
    });
  });

  it('never serves a bundle that no longer matches its checksum', async () => {
    const repo = makeRepo({ 'package.json': '{"name":"y","version":"1.0.0"}', 'package-lock.json': JSON.stringify({ lockfileVersion: 3, packages: { '': {} } }) });
    const id = (await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'] })).json().id;
    expect((await h.settle(id)).state).toBe('complete');
    const file = path.join(h.env.dataDir, 'source-cache', 'blobs', (await h.app.sourceCache.requests.load(id))!.bundleKey!);
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(file, bytes);
    const dl = await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) });
    expect(dl.statusCode).toBe(500);
    expect(dl.json()).toEqual({ error: `The bundle for request ${id} failed its checksum verification` });
  });

  it('marks old requests stale: bundle and logs gone, record, manifest and history kept', async () => {
    const repo = makeRepo({ 'package.json': '{"name":"z","version":"1.0.0"}', 'package-lock.json': JSON.stringify({ lockfileVersion: 3, packages: { '': {} } }) });
    const id = (await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['npm'] })).json().id;
    expect((await h.settle(id)).state).toBe('complete');
    expect(await h.app.sourceCache.sweepStale(new Date())).toBe(0);
    expect(await h.app.sourceCache.sweepStale(new Date(Date.now() + 31 * 24 * 3_600_000))).toBeGreaterThanOrEqual(1);
    const row = (await h.app.inject({ url: `/api/v1/requests/${id}`, headers: h.headers(alice) })).json();
    expect(row.state).toBe('stale');
    expect(row.state_history.map((s: { state: string }) => s.state)).toEqual(['stale', 'complete', 'in_progress']);
    const logs = await h.app.inject({ url: `/api/v1/requests/${id}/logs`, headers: h.headers(alice) });
    expect(logs.statusCode).toBe(410);
    expect(logs.json()).toEqual({ error: `The logs for the Cachito request ${id} no longer exist` });
    expect((await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) })).statusCode).toBe(400);
    expect((await h.app.inject({ url: `/api/v1/requests/${id}/content-manifest`, headers: h.headers(alice) })).statusCode).toBe(200);
  });
});
