import { json } from '@dockyard/kit';
import { rawDocument } from '@dockyard/contracts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { makeRepo } from './fixtures.js';
import { alice, anonymous, bob, osbs, startHarness, worker, type Harness } from './helpers.js';

const REF = 'a'.repeat(40);

describe('Cachito requests API (role api: nothing processes; PostgreSQL, NATS)', () => {
  let h: Harness;
  const events: { requestId: number; state: string; previousState: string | null }[] = [];
  const post = (payload: unknown, who = alice) => h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(who), payload: payload as object });
  const get = (url: string, who = alice) => h.app.inject({ url, headers: h.headers(who) });

  beforeAll(async () => {
    h = await startHarness(null, { DOCKYARD_ROLE: 'api', DOCKYARD_GIT_ALLOW: '', DOCKYARD_NPM_REGISTRY: 'http://127.0.0.1:9/npm', DOCKYARD_PYPI_INDEX: 'http://127.0.0.1:9/pypi', DOCKYARD_GOPROXY: 'http://127.0.0.1:9/go' });
    const sub = h.app.nats.subscribe(h.app.subjects.of('events.source-cache.request.state'));
    void (async () => {
      for await (const m of sub) events.push(json.decode(m.data));
    })();
  });
  afterAll(async () => h?.close());

  it('validates a new request with Cachito wording, naming the offending value', async () => {
    const cases: [unknown, string][] = [
      [{ repo: 'https://github.com/x/y.git', ref: 'abc' }, 'The "ref" parameter must be a 40 character hex string'],
      [{ repo: `https://github.com/${'x'.repeat(200)}.git`, ref: REF }, 'The "repo" parameter must be less than 200 characters'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, pkg_managers: ['cargo'] }, 'The following package managers are invalid: cargo'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, pkg_managers: ['npm'], packages: { npm: [{ path: '../etc' }] } }, 'The "path" value "../etc" in "packages.npm" must be a relative path in the source repository without ".."'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, pkg_managers: ['npm'], packages: { npm: [{ path: '/abs' }] } }, 'The "path" value "/abs" in "packages.npm" must be a relative path in the source repository without ".."'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, pkg_managers: ['npm'], packages: { pip: [{ path: 'a' }] } }, 'The following package managers in the "packages" object do not apply: pip'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, flags: ['bogus'] }, 'Invalid/Inactive flag(s): bogus'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, flags: ['gomod-vendor'] }, 'Invalid/Inactive flag(s): gomod-vendor (inactive in Dockyard: gomod-vendor)'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, pkg_managers: ['npm'], dependency_replacements: [{ name: 'a', type: 'npm', version: '1' }] }, 'Dependency replacements are only supported for the gomod package manager'],
      [{ repo: 'https://github.com/x/y.git', ref: REF, surprise: 1 }, 'Field surprise not supported'],
      [{ repo: 'file:///etc', ref: REF }, 'The git URL scheme "file" is not allowed (DOCKYARD_GIT_ALLOW)'],
      [{ repo: '--upload-pack=touch /tmp/x:y', ref: REF }, 'The "repo" parameter must be a git URL'],
      [{ repo: 'http://127.0.0.1/x.git', ref: REF }, 'The git host "127.0.0.1" resolves to 127.0.0.1, a non-public address not allowed by DOCKYARD_GIT_ALLOW'],
    ];
    for (const [body, error] of cases) {
      const res = await post(body);
      expect({ body, status: res.statusCode, error: res.json().error }).toEqual({ body, status: 400, error });
    }
    expect((await post({ repo: 'https://github.com/x/y.git', ref: REF }, anonymous)).statusCode).toBe(401);
    const onBehalf = await post({ repo: 'https://github.com/x/y.git', ref: REF, user: 'carol' });
    expect(onBehalf.statusCode).toBe(403);
    expect(onBehalf.json()).toEqual({ error: 'You are not authorized to create a request on behalf of another user' });
  });

  it('creates requests (default gomod, [] for source only, on behalf of a user) and publishes the state', async () => {
    const res = await post({ repo: 'https://github.com/x/y.git', ref: REF });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body).toMatchObject({
      repo: 'https://github.com/x/y.git',
      ref: REF,
      state: 'in_progress',
      state_reason: 'The request was initiated',
      pkg_managers: ['gomod'],
      flags: [],
      user: 'alice',
      submitted_by: null,
      packages: [],
      dependencies: [],
      environment_variables: {},
      configuration_files: `https://dockyard.test/api/v1/requests/${body.id}/configuration-files`,
      environment_variables_info: `https://dockyard.test/api/v1/requests/${body.id}/environment-variables`,
      logs: { url: `https://dockyard.test/api/v1/requests/${body.id}/logs` },
    });
    expect(body.state_history).toEqual([{ state: 'in_progress', state_reason: 'The request was initiated', updated: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/) }]);
    expect((await post({ repo: 'https://github.com/x/y.git', ref: REF, pkg_managers: [] })).json().pkg_managers).toEqual([]);
    const carol = await post({ repo: 'https://github.com/x/carol.git', ref: REF, user: 'carol', flags: ['include-git-dir'] }, osbs);
    expect(carol.json()).toMatchObject({ user: 'carol', submitted_by: 'osbs', flags: ['include-git-dir'] });
    for (let i = 0; i < 50 && !events.some((e) => e.requestId === body.id); i++) await new Promise((r) => setTimeout(r, 50));
    expect(events.find((e) => e.requestId === body.id)).toMatchObject({ state: 'in_progress', previousState: null, repo: 'https://github.com/x/y.git', actor: 'alice', resource: `cachito-request:${body.id}` });
  });

  it('restricts PATCH and configuration files to workers, keeps every transition in state_history', async () => {
    const id = (await post({ repo: 'https://github.com/x/p.git', ref: REF, pkg_managers: ['npm'] })).json().id;
    const patch = (payload: unknown, who = worker) => h.app.inject({ method: 'PATCH', url: `/api/v1/requests/${id}`, headers: h.headers(who), payload: payload as object });
    expect((await patch({ state: 'complete', state_reason: 'x' }, alice)).json()).toEqual({ error: 'This API endpoint is restricted to Cachito workers' });
    expect((await patch({ state: 'complete', state_reason: 'x' }, alice)).statusCode).toBe(403);
    expect((await patch({ state: 'awesome', state_reason: 'x' })).statusCode).toBe(400);
    const done = await patch({
      state: 'complete',
      state_reason: 'Completed successfully',
      environment_variables: { FOO: 'bar' },
      package: { name: 'p', type: 'npm', version: '1.0.0' },
      dependencies: [{ name: 'left-pad', type: 'npm', version: '1.3.0', replaces: null }],
    });
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({ state: 'complete', environment_variables: { FOO: 'bar' }, dependencies: [{ name: 'left-pad', type: 'npm', version: '1.3.0', replaces: null }] });
    expect(done.json().state_history.map((s: { state: string }) => s.state)).toEqual(['complete', 'in_progress']);
    const files = [{ path: 'app/.npmrc', type: 'base64', content: Buffer.from('registry=x\n').toString('base64') }];
    const add = (who = worker, payload: unknown = files) => h.app.inject({ method: 'POST', url: `/api/v1/requests/${id}/configuration-files`, headers: h.headers(who), payload: payload as object });
    expect((await add(alice)).statusCode).toBe(403);
    expect((await add(worker, [{ path: '../x', type: 'base64', content: '' }])).statusCode).toBe(400);
    expect((await add()).statusCode).toBe(204);
    expect((await get(`/api/v1/requests/${id}/configuration-files`)).json()).toEqual(files);
    expect((await get(`/api/v1/requests/${id}/environment-variables`)).json()).toEqual({ FOO: { value: 'bar', kind: 'literal' } });
    expect((await get(`/api/v1/requests/${id}/content-manifest`)).json().image_contents).toEqual([
      { purl: 'pkg:generic/p@1.0.0?vcs_url=git%2Bhttps%3A%2F%2Fgithub.com%2Fx%2Fp.git%40aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', dependencies: [{ purl: 'pkg:npm/left-pad@1.3.0' }], sources: [{ purl: 'pkg:npm/left-pad@1.3.0' }] },
    ]);
    const merged = await get(`/api/v1/content-manifest?requests=${id},1`);
    expect(merged.statusCode).toBe(400);
    expect(merged.json().error).toMatch(/^Request 1 is in state in_progress, not complete or stale\.$/);
  });

  it('lists with pagination, filters and the meta block; only what the caller may see', async () => {
    for (let i = 0; i < 5; i++) await post({ repo: 'https://github.com/bob/b.git', ref: `${i}`.repeat(40), pkg_managers: i % 2 ? ['npm'] : ['npm', 'pip'] }, bob);
    const page = await get('/api/v1/requests?per_page=2&page=2&repo=https://github.com/bob/b.git', bob);
    expect(page.statusCode).toBe(200);
    const body = page.json();
    expect(body.items).toHaveLength(2);
    expect(typeof body.items[0].dependencies).toBe('number');
    const link = (n: number) => `https://dockyard.test/api/v1/requests?page=${n}&per_page=2&verbose=False&repo=https%3A%2F%2Fgithub.com%2Fbob%2Fb.git`;
    expect(body.meta).toEqual({ first: link(1), last: link(3), next: link(3), previous: link(1), page: 2, pages: 3, per_page: 2, total: 5 });
    expect((await get('/api/v1/requests?per_page=2&page=4', bob)).statusCode).toBe(404);
    expect((await get('/api/v1/requests?pkg_manager=pip&pkg_manager=npm', bob)).json().meta.total).toBe(3);
    expect((await get(`/api/v1/requests?ref=${'1'.repeat(40)}&verbose=true`, bob)).json().items[0].state_history).toHaveLength(1);
    expect((await get('/api/v1/requests?state=complete', bob)).json().meta.total).toBe(0);
    expect((await get('/api/v1/requests', alice)).json().items.every((r: { user: string }) => r.user === 'alice')).toBe(true);
    expect((await get('/api/v1/requests', anonymous)).json().meta.total).toBe(0);
    expect((await get('/api/v1/requests', worker)).json().meta.total).toBeGreaterThanOrEqual(9);
    expect((await get('/api/v1/requests?pkg_manager=cargo', bob)).json()).toEqual({ error: 'The following package managers are invalid: cargo' });
    const bad = await get('/api/v1/requests?state=awesome');
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toEqual({ error: 'awesome is not a valid request state. Valid states are: complete, failed, in_progress, stale' });

    const latest = await get(`/api/v1/requests/latest?repo=https://github.com/bob/b.git&ref=${'4'.repeat(40)}`, bob);
    expect(latest.json()).toMatchObject({ ref: '4'.repeat(40), user: 'bob' });
    expect((await get(`/api/v1/requests/latest?repo=https://github.com/bob/b.git&ref=${'4'.repeat(40)}`, alice)).statusCode).toBe(404);
    expect((await get(`/api/v1/requests/latest?repo=x&ref=nothex`, bob)).json()).toEqual({ error: 'The "ref" parameter must be a 40 character hex string' });
  });

  it('publishes every state change in the shape openapi/events.yaml gives', async () => {
    await h.app.nats.flush();
    const doc = rawDocument('events') as { components: { schemas: Record<string, { 'x-subject'?: string }> } };
    const ajv = new Ajv2020({ strict: false });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    const [name, schema] = Object.entries(doc.components.schemas).find(([, s]) => s['x-subject'] === 'events.source-cache.request.state')!;
    ajv.addSchema(schema, name);
    const validate = ajv.getSchema(name)!;
    expect(events.length).toBeGreaterThan(5);
    for (const e of events) expect({ valid: validate(e), errors: validate.errors ?? null }).toEqual({ valid: true, errors: null });
    expect(events.some((e) => e.state === 'complete' && e.previousState === 'in_progress')).toBe(true);
  });

  it('reports status: no workers in an api-only process and unreachable upstreams', async () => {
    const status = await h.app.inject({ url: '/api/v1/status' });
    expect(status.statusCode).toBe(200);
    const body = status.json();
    expect(body.workers).toEqual([]);
    expect(body.services.find((s: { name: string }) => s.name === 'database')).toEqual({ name: 'database', ok: true });
    expect(body.services.find((s: { name: string }) => s.name === 'goproxy').ok).toBe(false);
    expect(body.can_process).toEqual({ gomod: false, npm: false, pip: false });
    const short = await h.app.inject({ url: '/api/v1/status/short' });
    expect(short.statusCode).toBe(503);
    expect(short.json().ok).toBe(false);
  });
});

describe('status with a worker and a reachable upstream', () => {
  it('answers ok', async () => {
    const repo = makeRepo({ 'README': 'x' });
    const http = await import('node:http');
    const server = http.createServer((_q, r) => r.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const h = await startHarness(null, { DOCKYARD_NPM_REGISTRY: base, DOCKYARD_PYPI_INDEX: base, DOCKYARD_GOPROXY: base });
    try {
      const short = await h.app.inject({ url: '/api/v1/status/short' });
      expect(short.json()).toEqual({ ok: true });
      const status = (await h.app.inject({ url: '/api/v1/status' })).json();
      expect(status.workers).toHaveLength(1);
      expect(status.can_process).toEqual({ gomod: true, npm: true, pip: true });
      // Source only ([] package managers): the bundle holds app/ and an empty deps/.
      const res = await h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: { repo: repo.url, ref: repo.ref, pkg_managers: [] } });
      expect((await h.settle(res.json().id)).state).toBe('complete');
    } finally {
      await h.close();
      server.close();
    }
  });
});
