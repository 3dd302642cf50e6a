import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { extract } from 'tar';
import { escapeModule, hash1 } from '../src/pm/gomod.js';
import { makeRepo, Upstream, tmpDir } from './fixtures.js';
import { alice, cycloneDxErrors, startHarness, type Harness } from './helpers.js';

const golden = (name: string) => path.join(path.dirname(new URL(import.meta.url).pathname), 'golden', name);
function expectGolden(name: string, actual: unknown): void {
  if (process.env.UPDATE_GOLDEN) writeFileSync(golden(name), `${JSON.stringify(actual, null, 2)}\n`);
  expect(actual).toEqual(JSON.parse(readFileSync(golden(name), 'utf8')));
}
const normalize = (v: unknown, subs: [string, string][]) => {
  let t = JSON.stringify(v);
  for (const [a, b] of subs) t = t.split(a).join(b);
  return JSON.parse(t);
};

describe("Go's dirhash h1", () => {
  it('matches the go.sum line of a real module (golang.org/x/text v0.3.0/go.mod)', () => {
    // proxy.golang.org serves this synthesized go.mod for the pre-modules version; go.sum records its hash.
    const mod = 'module golang.org/x/text\n';
    expect(hash1([{ name: 'go.mod', sha256: createHash('sha256').update(mod).digest('hex') }])).toBe('h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=');
    expect(escapeModule('github.com/BurntSushi/toml')).toBe('github.com/!burnt!sushi/toml');
  });
});

describe('gomod requests (local GOPROXY upstream)', () => {
  let upstream: Upstream;
  let h: Harness;
  let sum = '';

  beforeAll(async () => {
    upstream = await new Upstream().start();
    sum += await upstream.go('github.com/Masterminds/semver', 'v1.5.0');
    sum += await upstream.go('golang.org/x/text', 'v0.3.7');
    // Only the go.mod of this one is needed (go.sum lists just `/go.mod`).
    sum += (await upstream.go('example.org/modonly', 'v1.0.0')).split('\n')[1] + '\n';
    await upstream.go('golang.org/x/text', 'v0.3.8');
    h = await startHarness(upstream);
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.stop();
  });

  const goRepo = (goSum: string) =>
    makeRepo({
      'go.mod': 'module example.org/app\n\ngo 1.21\n\nrequire (\n\tgithub.com/Masterminds/semver v1.5.0\n\tgolang.org/x/text v0.3.7\n)\n',
      'go.sum': goSum,
      'main.go': 'package main\n\nfunc main() {}\n',
    });
  const create = (body: Record<string, unknown>) => h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: body });

  it('lays out a module cache from go.sum with h1 hashes checked; env vars, manifest, SBOM, GOPROXY view; warm request fetches nothing', async () => {
    const repo = goRepo(sum);
    const res = await create({ repo: repo.url, ref: repo.ref, flags: ['cgo-disable'] });
    expect(res.json().pkg_managers).toEqual(['gomod']);
    const id = res.json().id;
    const done = await h.settle(id);
    expect(done.state).toBe('complete');
    expect(done.packages).toEqual([
      {
        name: 'example.org/app',
        type: 'gomod',
        version: `v0.0.0-${repo.ref.slice(0, 12)}`,
        dependencies: [
          { name: 'github.com/Masterminds/semver', type: 'gomod', version: 'v1.5.0', replaces: null },
          { name: 'golang.org/x/text', type: 'gomod', version: 'v0.3.7', replaces: null },
        ],
      },
    ]);
    const fetched = upstream.count('/goproxy/');
    expect(fetched).toBe(5); // 2 zips + 3 go.mod files

    const env = (await h.app.inject({ url: `/api/v1/requests/${id}/environment-variables`, headers: h.headers(alice) })).json();
    expectGolden('gomod-environment-variables.json', env);
    const subs: [string, string][] = [[repo.url, 'REPO'], [encodeURIComponent(repo.url), 'REPO'], [repo.ref, 'REF'], [repo.ref.slice(0, 12), 'REF12']];
    expectGolden('gomod-content-manifest.json', normalize((await h.app.inject({ url: `/api/v1/requests/${id}/content-manifest`, headers: h.headers(alice) })).json(), subs));
    const sbom = (await h.app.inject({ url: `/api/v1/requests/${id}/sbom`, headers: h.headers(alice) })).json();
    expect(await cycloneDxErrors(sbom)).toBeNull();
    sbom.metadata.timestamp = 'TIMESTAMP';
    sbom.serialNumber = 'SERIAL';
    expectGolden('gomod-sbom.json', normalize(sbom, subs));

    const dl = await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) });
    const out = tmpDir('gobundle-');
    writeFileSync(path.join(out, 'b.tgz'), dl.rawPayload);
    await extract({ file: path.join(out, 'b.tgz'), cwd: out });
    const v = path.join(out, 'deps/gomod/pkg/mod/cache/download/github.com/!masterminds/semver/@v');
    expect(readdirSync(v).sort()).toEqual(['list', 'v1.5.0.info', 'v1.5.0.mod', 'v1.5.0.zip', 'v1.5.0.ziphash']);
    expect(readFileSync(path.join(v, 'v1.5.0.ziphash'), 'utf8')).toBe(sum.split('\n')[0].split(' ')[2]);
    expect(readdirSync(path.join(out, 'deps/gomod/pkg/mod/cache/download/example.org/modonly/@v')).sort()).toEqual(['list', 'v1.0.0.info', 'v1.0.0.mod']);
    expect(readdirSync(path.join(out, 'app')).sort()).toEqual(['go.mod', 'go.sum', 'main.go']);

    const view = (p: string) => h.app.inject({ url: `/api/v1/requests/${id}/packages/goproxy/${p}`, headers: h.headers(alice) });
    expect((await view('github.com/!masterminds/semver/@v/list')).body).toBe('v1.5.0\n');
    expect((await view('github.com/!masterminds/semver/@v/v1.5.0.info')).json()).toEqual({ Version: 'v1.5.0' });
    expect((await view('github.com/!masterminds/semver/@v/v1.5.0.zip')).rawPayload.equals(upstream.files.get('/goproxy/github.com/!masterminds/semver/@v/v1.5.0.zip')!.body)).toBe(true);
    expect((await view('github.com/!masterminds/semver/@v/v9.9.9.zip')).statusCode).toBe(404);

    const again = await create({ repo: repo.url, ref: repo.ref });
    expect((await h.settle(again.json().id)).state).toBe('complete');
    expect(upstream.count('/goproxy/')).toBe(fetched);
  });

  it('refuses a module whose zip does not match its go.sum h1 hash', async () => {
    const bad = sum.replace(/^(golang\.org\/x\/text v0\.3\.7 )h1:\S+/m, '$1h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=');
    const repo = goRepo(bad);
    const done = await h.settle((await create({ repo: repo.url, ref: repo.ref })).json().id);
    expect(done.state).toBe('failed');
    expect(done.state_reason).toMatch(/^The checksum of gomod golang\.org\/x\/text@v0\.3\.7 does not match go\.sum \(expected h1:AAAA/);
  });

  it("reports go.mod's own replace directives as `replaces`", async () => {
    const repo = makeRepo({
      'go.mod': 'module example.org/app\n\ngo 1.21\n\nrequire (\n\tgithub.com/Masterminds/semver v1.5.0\n\tgolang.org/x/text v0.3.0 // indirect\n)\n\nreplace golang.org/x/text => golang.org/x/text v0.3.7\n\nreplace (\n\texample.org/local => ./local\n)\n',
      'go.sum': sum,
    });
    const done = await h.settle((await create({ repo: repo.url, ref: repo.ref })).json().id);
    expect(done.state).toBe('complete');
    expect(done.dependencies).toContainEqual({ name: 'golang.org/x/text', type: 'gomod', version: 'v0.3.7', replaces: { name: 'golang.org/x/text', type: 'gomod', version: 'v0.3.0' } });
  });

  it('applies dependency replacements', async () => {
    const repo = goRepo(sum);
    const res = await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['gomod'], dependency_replacements: [{ name: 'golang.org/x/text', type: 'gomod', version: 'v0.3.8' }] });
    const done = await h.settle(res.json().id);
    expect(done.state).toBe('complete');
    expect(done.dependencies).toContainEqual({ name: 'golang.org/x/text', type: 'gomod', version: 'v0.3.8', replaces: { name: 'golang.org/x/text', type: 'gomod', version: 'v0.3.7' } });
  });
});
