import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { extract } from 'tar';
import { makeRepo, makeSuperproject, npmTarball, Upstream, tmpDir } from './fixtures.js';
import { alice, startHarness, type Harness } from './helpers.js';

describe('yarn (classic and Berry) and git-submodule requests', () => {
  let upstream: Upstream;
  let h: Harness;
  const pkgs: Record<string, { version: string; resolved: string; integrity: string }> = {};

  beforeAll(async () => {
    upstream = await new Upstream().start();
    pkgs.a = await upstream.npm('alpha', '1.0.0');
    pkgs.b = await upstream.npm('@scope/beta', '2.0.0');
    upstream.packument('alpha', { '1.0.0': pkgs.a.integrity });
    upstream.packument('@scope/beta', { '2.0.0': pkgs.b.integrity });
    h = await startHarness(upstream, { DOCKYARD_CACHITO_PKG_MANAGERS: 'gomod,npm,pip,yarn,git-submodule' });
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.stop();
  });
  const create = (body: Record<string, unknown>) => h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: body });

  it('reads a classic yarn.lock (integrity, or the sha1 in resolved) and refuses a mismatch', async () => {
    const { tgz } = await npmTarball('@scope/beta', '2.0.0');
    const sha1 = createHash('sha1').update(tgz).digest('hex');
    const lock = (betaSha1: string) =>
      `# yarn lockfile v1\n\n\nalpha@^1.0.0:\n  version "1.0.0"\n  resolved "https://registry.yarnpkg.com/alpha/-/alpha-1.0.0.tgz"\n  integrity ${pkgs.a.integrity}\n  dependencies:\n    "@scope/beta" "^2"\n\n"@scope/beta@^2", "@scope/beta@^2.0.0":\n  version "2.0.0"\n  resolved "https://registry.yarnpkg.com/@scope/beta/-/beta-2.0.0.tgz#${betaSha1}"\n`;
    const repo = makeRepo({ 'package.json': '{"name":"yc","version":"3.0.0"}', 'yarn.lock': lock(sha1) });
    const id = (await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['yarn'] })).json().id;
    const done = await h.settle(id);
    expect(done.state).toBe('complete');
    expect(done.packages).toEqual([
      { name: 'yc', type: 'yarn', version: '3.0.0', dependencies: [{ name: '@scope/beta', type: 'yarn', version: '2.0.0', replaces: null }, { name: 'alpha', type: 'yarn', version: '1.0.0', replaces: null }] },
    ]);
    const files = (await h.app.inject({ url: `/api/v1/requests/${id}/configuration-files`, headers: h.headers(alice) })).json();
    expect(files).toEqual([{ path: 'app/.yarnrc', type: 'base64', content: Buffer.from(`registry "https://dockyard.test/api/v1/requests/${id}/packages/yarn/"\n`).toString('base64') }]);
    const packument = (await h.app.inject({ url: `/api/v1/requests/${id}/packages/yarn/alpha`, headers: h.headers(alice) })).json();
    expect(packument.versions['1.0.0'].dist.integrity).toBe(pkgs.a.integrity);
    const icm = (await h.app.inject({ url: `/api/v1/requests/${id}/content-manifest`, headers: h.headers(alice) })).json();
    expect(icm.image_contents[0].dependencies).toEqual([{ purl: 'pkg:npm/%40scope/beta@2.0.0' }, { purl: 'pkg:npm/alpha@1.0.0' }]);

    const bad = makeRepo({ 'package.json': '{"name":"yc","version":"3.0.0"}', 'yarn.lock': lock('0'.repeat(40)) });
    const failed = await h.settle((await create({ repo: bad.url, ref: bad.ref, pkg_managers: ['yarn'] })).json().id);
    expect(failed).toMatchObject({ state: 'failed', state_reason: 'The checksum of yarn @scope/beta@2.0.0 does not match yarn.lock' });
  });

  it('reads a Berry yarn.lock, checking tarballs against the registry integrity, and writes .yarnrc.yml', async () => {
    const lock = `__metadata:\n  version: 8\n  cacheKey: 10c0\n\n"alpha@npm:^1.0.0":\n  version: 1.0.0\n  resolution: "alpha@npm:1.0.0"\n  checksum: 10c0/abc\n  languageName: node\n  linkType: hard\n\n"@scope/beta@npm:2.0.0":\n  version: 2.0.0\n  resolution: "@scope/beta@npm:2.0.0"\n  languageName: node\n  linkType: hard\n\n"yb@workspace:.":\n  version: 0.0.0-use.local\n  resolution: "yb@workspace:."\n  languageName: unknown\n  linkType: soft\n`;
    const repo = makeRepo({ 'package.json': '{"name":"yb","version":"1.0.0"}', 'yarn.lock': lock, '.yarnrc.yml': 'nodeLinker: node-modules\n' });
    const id = (await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['yarn'] })).json().id;
    const done = await h.settle(id);
    expect(done.state).toBe('complete');
    expect((done.dependencies as { name: string }[]).map((d) => d.name)).toEqual(['@scope/beta', 'alpha']);
    const files = (await h.app.inject({ url: `/api/v1/requests/${id}/configuration-files`, headers: h.headers(alice) })).json();
    expect(Buffer.from(files[0].content, 'base64').toString()).toBe(`npmRegistryServer: "https://dockyard.test/api/v1/requests/${id}/packages/yarn/"\n`);
    expect(files[0].path).toBe('app/.yarnrc.yml');
  });

  it('clones submodules at their pinned commits inside app/', async () => {
    const sub = makeRepo({ 'lib.txt': 'library v1\n' });
    const superproject = makeSuperproject(sub);
    // A later commit in the submodule's repository is not what the superproject pins.
    writeFileSync(path.join(sub.dir, 'lib.txt'), 'library v2\n');
    execFileSync('git', ['-c', 'user.email=t@x', '-c', 'user.name=t', 'commit', '-qam', 'v2'], { cwd: sub.dir });
    const id = (await create({ repo: superproject.url, ref: superproject.ref, pkg_managers: ['git-submodule'] })).json().id;
    const done = await h.settle(id);
    expect(done.state).toBe('complete');
    expect(done.packages).toEqual([{ name: 'lib', type: 'git-submodule', version: `${sub.url}#${sub.ref}`, dependencies: [] }]);
    const dl = await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) });
    const out = tmpDir('sm-');
    writeFileSync(path.join(out, 'b.tgz'), dl.rawPayload);
    await extract({ file: path.join(out, 'b.tgz'), cwd: out });
    expect(readFileSync(path.join(out, 'app/lib/lib.txt'), 'utf8')).toBe('library v1\n');
    const icm = (await h.app.inject({ url: `/api/v1/requests/${id}/content-manifest`, headers: h.headers(alice) })).json();
    expect(icm.image_contents[0].purl).toBe(`pkg:generic/lib?vcs_url=${encodeURIComponent(`git+${sub.url}@${sub.ref}`)}`);
  });
});
