import { randomUUID } from 'node:crypto';
import { IDENTITY_HEADER, identitySigner, request } from '@dockyard/kit';
import { buildRegistryApp } from '../src/app.js';
import { loadRegistryConfig } from '../src/config.js';
import { rawDocument, type RegistryAppGetReply } from '@dockyard/contracts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { admin, anonymous, appDoc, ns, repo, startHarness, user, waitFor, type Harness } from './harness.js';

// Submits here skip the clone (DOCKYARD_REGISTRY_SKIP_CLONE): the git path has its own test file
// (submit-git.test.ts); this one is about documents, rules and listings.
describe('registry apps: documents, validation, force/frozen, listings (real PostgreSQL and NATS)', () => {
  let h: Harness;
  const owner = user('testuser');
  const other = user('testuser2');

  beforeAll(async () => {
    h = await startHarness({ DOCKYARD_REGISTRY_SKIP_CLONE: '1' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('stores an app submitted as JSON and answers the stored app, as ECR did', async () => {
    const res = await h.call(owner, 'POST', '/apps/sage/simple/1.0', appDoc({
      inputs: [{ id: 'speed', type: 'int' }],
      metadata: { 'my-science-data': 12345 },
      resources: [{ type: 'RGB_image_producer', view: 'top', min_resolution: '600x800' }],
      source: { url: 'https://github.com/waggle-sensor/edge-plugins.git', branch: 'master', directory: 'plugin-simple', dockerfile: 'Dockerfile_sage', name: 'armv7', architectures: ['linux/arm/v7'] },
    }));
    expect(res.statusCode).toBe(200);
    const app = res.json();
    expect(app).toMatchObject({
      arguments: '',
      baseCommand: '',
      depends_on: '',
      description: 'very important app',
      inputs: [{ id: 'speed', type: 'int' }],
      metadata: { 'my-science-data': 12345 },
      name: 'simple',
      namespace: 'sage',
      owner: 'testuser',
      frozen: false,
      resources: [{ min_resolution: '600x800', type: 'RGB_image_producer', view: 'top' }],
      source: { architectures: ['linux/arm/v7'], branch: 'master', directory: 'plugin-simple', dockerfile: 'Dockerfile_sage', name: 'armv7', build_args: {} },
      version: '1.0',
    });
    expect(app.id).toMatch(/^[0-9a-f-]{36}$/);
    // The contract's App schema describes what is sent.
    const ajv = new Ajv2020({ strict: false });
    addFormats.default(ajv);
    const schemas = (rawDocument('registry') as { components: { schemas: Record<string, object> } }).components.schemas;
    for (const [name, schema] of Object.entries(schemas)) ajv.addSchema(schema, `#/components/schemas/${name}`);
    const validate = ajv.compile({ $ref: '#/components/schemas/App' });
    expect(validate(app)).toBe(true);

    const got = await h.call(owner, 'GET', '/apps/sage/simple/1.0');
    expect(got.statusCode).toBe(200);
    expect(got.headers['content-type']).toMatch(/^application\/json/);
    expect(got.json()).toEqual(app);
    // Trailing slashes are accepted, as ECR did.
    expect((await h.call(owner, 'GET', '/apps/sage/simple/1.0/')).json()).toEqual(app);
  });

  it('accepts YAML under any content type, and /submit with the names in the document', async () => {
    const yaml = [
      'namespace: sage',
      'name: yamlapp',
      'version: 1.0',
      'description: "from YAML"',
      'source:',
      '  url: https://github.com/waggle-sensor/edge-plugins.git',
      '  tag: v1',
      '  architectures: [linux/amd64, linux/arm64]',
      '  build_args: {FOO: bar}',
      'inputs:',
      '  - id: n',
      '    type: long',
    ].join('\n');
    for (const contentType of ['application/x-www-form-urlencoded', 'application/yaml', 'text/plain']) {
      const res = await h.call(owner, 'POST', '/submit?force=true', yaml, { 'content-type': contentType });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ namespace: 'sage', name: 'yamlapp', version: '1.0', description: 'from YAML', source: { tag: 'v1', build_args: { FOO: 'bar' } } });
    }
    // JSON sent as a form, as `curl -d '{...}'` does.
    const form = await h.call(owner, 'POST', '/submit', JSON.stringify(appDoc({ namespace: 'sage', name: 'formapp', version: '2' })), {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(form.statusCode).toBe(200);
    expect(form.json()).toMatchObject({ name: 'formapp', version: '2' });
  });

  it('refuses YAML that is unsafe or broken, and bodies over 32 KiB', async () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 60 }, (_, i) => `b${i}: [*a,*a,*a,*a,*a,*a,*a,*a,*a]`)].join('\n');
    const res = await h.call(owner, 'POST', '/apps/sage/simple/9', bomb, { 'content-type': 'text/plain' });
    expect(res.statusCode).toBe(400);
    const tag = await h.call(owner, 'POST', '/apps/sage/simple/9', 'description: !!js/function "function(){}"\n', { 'content-type': 'text/plain' });
    expect(tag.statusCode).toBe(400);
    const broken = await h.call(owner, 'POST', '/apps/sage/simple/9', '{"description": ', { 'content-type': 'application/json' });
    expect(broken.statusCode).toBe(400);
    expect(broken.json().error).toMatch(/neither valid JSON nor valid YAML/);
    const big = appDoc({ metadata: { blob: 'x'.repeat(33 * 1024) } });
    const tooBig = await h.call(owner, 'POST', '/apps/sage/simple/9', big);
    expect([tooBig.statusCode, tooBig.json()]).toEqual([413, { error: 'App document larger than 32768 bytes' }]);
    const bigYaml = await h.call(owner, 'POST', '/submit', `description: x\n# ${'y'.repeat(40_000)}\n`, { 'content-type': 'application/yaml' });
    expect(bigYaml.statusCode).toBe(413);
    // Other errors still have the kit's shape.
    expect((await h.call(owner, 'GET', '/apps/sage/simple/nope')).json()).toEqual({ error: 'App sage/simple:nope not found' });
    // Just under the limit is fine.
    const justUnder = appDoc({ metadata: { blob: 'x'.repeat(31 * 1024) } });
    expect((await h.call(owner, 'POST', '/apps/sage/simple/9', justUnder)).statusCode).toBe(200);
  });

  it.each([
    ['an unknown top-level field', appDoc({ colour: 'red' }), 'Field colour not supported'],
    ['no description', { source: appDoc().source }, 'description: required, a non-empty string'],
    ['an empty description', appDoc({ description: '   ' }), 'description: required, a non-empty string'],
    ['a description that is not a string', appDoc({ description: 5 }), 'description: required, a non-empty string'],
    ['no source', { description: 'x' }, 'source: required'],
    ['a source that is not an object', appDoc({ source: 'https://x' }), 'source: must be an object'],
    ['no source.url', appDoc({ source: { architectures: ['linux/amd64'] } }), 'source.url: required'],
    ['an unknown source field', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64'], colour: 1 } }), 'Field source.colour not supported'],
    ['no architectures', appDoc({ source: { url: 'https://x/y.git' } }), 'source.architectures: required'],
    ['empty architectures', appDoc({ source: { url: 'https://x/y.git', architectures: [] } }), 'source.architectures: must be a non-empty list'],
    ['an unknown architecture', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/s390x'] } }), 'source.architectures: "linux/s390x" is not one of'],
    ['a repeated architecture', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64', 'linux/amd64'] } }), 'source.architectures: must not repeat'],
    ['a build arg that is not a string', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64'], build_args: { N: 1 } } }), 'source.build_args.N: must be a string'],
    ['build_args not an object', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64'], build_args: ['A=1'] } }), 'source.build_args: must be an object'],
    ['a directory escaping the repository', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64'], directory: '../etc' } }), 'source.directory: must be a relative path'],
    ['an absolute dockerfile', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64'], dockerfile: '/etc/passwd' } }), 'source.dockerfile: must be a relative path'],
    ['a branch that is an option', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64'], branch: '--upload-pack=x' } }), 'source.branch: not a valid git branch name'],
    ['a tag that is not a string', appDoc({ source: { url: 'https://x/y.git', architectures: ['linux/amd64'], tag: 3 } }), 'source.tag: must be a string'],
    ['inputs not a list', appDoc({ inputs: { id: 'a' } }), 'inputs: must be a list'],
    ['an input without id', appDoc({ inputs: [{ type: 'int' }] }), 'inputs[0].id: required'],
    ['an input of an unknown type', appDoc({ inputs: [{ id: 'a', type: 'int' }, { id: 'b', type: 'integer' }] }), 'inputs[1].type: must be one of boolean, int, long, float, double, string, File'],
    ['resources not a list', appDoc({ resources: { a: 1 } }), 'resources: must be a list'],
    ['a resource that is not an object', appDoc({ resources: ['gpu'] }), 'resources[0]: must be an object'],
    ['metadata not an object', appDoc({ metadata: [1] }), 'metadata: must be an object'],
    ['frozen not a boolean', appDoc({ frozen: 'yes' }), 'frozen: must be true or false'],
    ['testing not an object', appDoc({ testing: 'x' }), 'testing: must be an object'],
    ['a string field that is not a string', appDoc({ license: 3 }), 'license: must be a string'],
    ['a namespace in the body differing from the path', appDoc({ namespace: 'other' }), 'namespace: the document says "other" but the path says "sage"'],
    ['a version in the body differing from the path', appDoc({ version: '2.0' }), 'version: the document says "2.0" but the path says "1.5"'],
    ['an invalid name', appDoc({ name: 'Simple' }), "name: may hold only lower-case letters"],
    ['a list instead of an object', [1, 2], 'The app document must be a JSON or YAML object'],
  ])('refuses %s with a 400 naming the field', async (_what, body, message) => {
    const res = await h.call(owner, 'POST', '/apps/sage/simple/1.5', body as object);
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toContain(message);
  });

  it('refuses an empty body, and /submit without namespace or name', async () => {
    expect((await h.call(owner, 'POST', '/apps/sage/simple/1.5', '', { 'content-type': 'text/plain' })).json().error).toMatch(/empty/);
    const noNs = await h.call(owner, 'POST', '/submit', appDoc({ name: 'x', version: '1' }));
    expect([noNs.statusCode, noNs.json().error]).toEqual([400, 'namespace: required']);
    const noName = await h.call(owner, 'POST', '/submit', appDoc({ namespace: 'sage', version: '1' }));
    expect([noName.statusCode, noName.json().error]).toEqual([400, 'name: required']);
    const badPath = await h.call(owner, 'POST', '/apps/Sage/simple/1', appDoc());
    expect(badPath.statusCode).toBe(400);
    expect(badPath.json().error).toMatch(/namespace/);
  });

  it('refuses to overwrite without ?force=true, and never overwrites a frozen app', async () => {
    const first = (await h.call(owner, 'POST', '/apps/sage/forced/1.0', appDoc({ description: 'one' }))).json();
    const again = await h.call(owner, 'POST', '/apps/sage/forced/1.0', appDoc({ description: 'two' }));
    expect([again.statusCode, again.json().error]).toEqual([409, 'App sage/forced:1.0 already exists (use ?force=true to overwrite)']);
    const forced = await h.call(owner, 'POST', '/apps/sage/forced/1.0?force=true', appDoc({ description: 'two' }));
    expect(forced.statusCode).toBe(200);
    expect(forced.json()).toMatchObject({ id: first.id, description: 'two', time_created: first.time_created });

    // PUT ?frozen=true freezes (WRITE): no more overwrites, even forced; only an admin deletes it.
    const frozen = await h.call(owner, 'PUT', '/apps/sage/forced/1.0?frozen=true');
    expect(frozen.statusCode).toBe(200);
    expect(frozen.json()).toMatchObject({ frozen: true, description: 'two' });
    expect((await h.call(owner, 'GET', '/apps/sage/forced/1.0')).json().frozen).toBe(true);
    const over = await h.call(owner, 'POST', '/apps/sage/forced/1.0?force=true', appDoc({ description: 'three' }));
    expect([over.statusCode, over.json().error]).toEqual([409, 'App sage/forced:1.0 is frozen and cannot be overwritten']);
    const del = await h.call(owner, 'DELETE', '/apps/sage/forced/1.0');
    expect([del.statusCode, del.json().error]).toEqual([401, 'Not authorized. (App sage/forced:1.0 is frozen, only an admin can delete it)']);
    const unfreeze = await h.call(owner, 'PUT', '/apps/sage/forced/1.0?frozen=false');
    expect(unfreeze.statusCode).toBe(401);
    expect((await h.call(owner, 'PUT', '/apps/sage/forced/1.0')).statusCode).toBe(400); // frozen missing
    expect((await h.call(owner, 'PUT', '/apps/sage/forced/1.0?frozen=maybe')).statusCode).toBe(400);
    expect((await h.call(admin, 'DELETE', '/apps/sage/forced/1.0')).json()).toEqual({ deleted: 1 });
    expect((await h.call(owner, 'GET', '/apps/sage/forced/1.0')).statusCode).toBe(404);

    // Submitted frozen: frozen from the start.
    expect((await h.call(owner, 'POST', '/apps/sage/forced/2.0', appDoc({ frozen: true }))).json().frozen).toBe(true);
    expect((await h.call(owner, 'POST', '/apps/sage/forced/2.0?force=true', appDoc())).statusCode).toBe(409);
    // An admin may unfreeze; then it can be overwritten again.
    expect((await h.call(admin, 'PUT', '/apps/sage/forced/2.0?frozen=false')).json().frozen).toBe(false);
    expect((await h.call(owner, 'POST', '/apps/sage/forced/2.0?force=true', appDoc())).statusCode).toBe(200);
  });

  it('publishes events.registry.* with the payloads of openapi/events.yaml', async () => {
    await h.call(other, 'POST', '/apps/evns/evrepo/1', appDoc());
    await h.call(other, 'PUT', '/apps/evns/evrepo/1?frozen=true');
    await h.call(admin, 'DELETE', '/apps/evns/evrepo/1');
    await h.call(other, 'DELETE', '/repositories/evns/evrepo');
    await h.call(other, 'DELETE', '/namespaces/evns');
    const subjects = ['app.submitted', 'app.frozen', 'app.deleted', 'namespace.created', 'namespace.deleted', 'repository.created', 'repository.deleted'].map((s) => `events.registry.${s}`);
    const mine = () => h.events.filter((e) => e.payload.resource === 'namespace:evns' || e.payload.resource === 'repository:evns/evrepo');
    await waitFor(() => subjects.every((s) => mine().some((e) => e.subject === s)));
    const ajv = new Ajv2020({ strict: false });
    addFormats.default(ajv);
    const schemas = (rawDocument('events') as { components: { schemas: Record<string, { 'x-subject': string }> } }).components.schemas;
    for (const event of mine()) {
      const schema = Object.values(schemas).find((s) => s['x-subject'] === event.subject);
      expect(schema).toBeDefined();
      const validate = ajv.compile(schema as object);
      expect({ subject: event.subject, valid: validate(event.payload), errors: validate.errors }).toEqual({ subject: event.subject, valid: true, errors: null });
    }
    expect(mine().find((e) => e.subject === 'events.registry.app.submitted')?.payload).toMatchObject({ actor: 'testuser2', namespace: 'evns', name: 'evrepo', version: '1', owner: 'testuser2', forced: false });
  });

  it('answers registry.app.get over NATS for the build service (contracts.md #1)', async () => {
    const stored = (await h.call(owner, 'GET', '/apps/sage/simple/1.0')).json();
    const reply = await request<object, RegistryAppGetReply>(h.registry.nats, h.registry.subjects.of('registry.app.get'), { namespace: 'sage', name: 'simple', version: '1.0', extra: 1 });
    expect(reply.app).toEqual({ ...stored, commit: '', sourceArchive: null });
    expect(await request(h.registry.nats, h.registry.subjects.of('registry.app.get'), { namespace: 'sage', name: 'simple', version: 'nope' })).toEqual({ app: null });
    expect(await request(h.registry.nats, h.registry.subjects.of('registry.app.get'), { namespace: '../x', name: 'simple', version: '1' })).toEqual({ app: null });
  });

  it('pages over more than 1000 apps with limit and continue, listing only what the caller may read', async () => {
    // 1,234 versions in one repository of testuser's, inserted directly (a submit per row would take minutes).
    await h.call(owner, 'POST', '/apps/bulk/many/0', appDoc());
    const base = (await h.call(owner, 'GET', '/apps/bulk/many/0')).json();
    const rows = Array.from({ length: 1233 }, (_, i) => {
      const id = randomUUID();
      const version = `1.${i + 1}`;
      return { id, namespace: 'bulk', name: 'many', version, repository: 'bulk/many', owner: 'testuser', body: JSON.stringify({ ...base, id, version }) };
    });
    await h.prisma.app.createMany({ data: rows });

    const seen: string[] = [];
    let url: string | null = '/apps/bulk';
    let pages = 0;
    while (url) {
      const res = await h.call(owner, 'GET', url);
      expect(res.statusCode).toBe(200);
      const page = res.json();
      expect(page.data.length).toBeLessThanOrEqual(1000);
      seen.push(...page.data.map((a: { version: string }) => a.version));
      url = page.pagination.next;
      if (url) expect(page.pagination).toMatchObject({ limit: 1000, continue: expect.any(String) });
      else expect(page.pagination.continue).toBeNull();
      pages++;
    }
    expect(pages).toBe(2);
    expect(seen).toHaveLength(1234);
    expect(new Set(seen).size).toBe(1234);

    // Smaller pages via limit + continue, through /apps too.
    const first = (await h.call(owner, 'GET', '/apps/bulk?limit=500')).json();
    expect(first.data).toHaveLength(500);
    const second = (await h.call(owner, 'GET', `/apps/bulk?limit=500&continue=${first.pagination.continue}`)).json();
    expect(second.data[0].version).toBe(seen[500]);
    expect((await h.call(owner, 'GET', '/apps?limit=1001')).statusCode).toBe(400);
    expect((await h.call(owner, 'GET', '/apps?limit=0')).statusCode).toBe(400);
    const badToken = await h.call(owner, 'GET', '/apps?continue=bm9wZQ');
    expect([badToken.statusCode, badToken.json().error]).toEqual([400, 'continue: not a token this service issued']);

    // Another user sees none of them, in any listing, nor any single one.
    const theirs = (await h.call(other, 'GET', '/apps/?limit=1000')).json();
    expect(theirs.data.filter((a: { namespace: string }) => a.namespace === 'bulk')).toEqual([]);
    expect((await h.call(other, 'GET', '/apps/bulk')).statusCode).toBe(401);
    expect((await h.call(other, 'GET', '/apps/bulk/many')).statusCode).toBe(401);
    expect((await h.call(other, 'GET', '/apps/bulk/many/1.7')).statusCode).toBe(401);
    expect((await h.call(anonymous, 'GET', '/apps')).json().data.filter((a: { namespace: string }) => a.namespace === 'bulk')).toEqual([]);
    // Admin sees everything.
    const all = (await h.call(admin, 'GET', '/apps/bulk/many')).json();
    expect(all).toHaveLength(1234);
    expect(all[0]).toEqual({ id: base.id, name: 'many', namespace: 'bulk', version: '0' });
  });

  it('serves reads from memory in every replica, and a change in one replica reaches the others at once', async () => {
    // A second registry process on the same database and NATS, with a long app cache.
    const replica = await buildRegistryApp(loadRegistryConfig(h.env.serviceEnv('registry', { DOCKYARD_REGISTRY_SKIP_CLONE: '1', DOCKYARD_REGISTRY_APP_CACHE_MS: '600000' })));
    await replica.ready();
    try {
      const sign = identitySigner(h.env.env.DOCKYARD_INTERNAL_SECRET);
      const read = async () => (await replica.inject({ method: 'GET', url: '/apps/sage/cached/1', headers: { [IDENTITY_HEADER]: sign(owner) } })).json();
      await h.call(owner, 'POST', '/apps/sage/cached/1', appDoc({ description: 'first' }));
      expect((await read()).description).toBe('first'); // now cached in the replica
      await h.call(owner, 'POST', '/apps/sage/cached/1?force=true', appDoc({ description: 'second' }));
      await waitFor(async () => (await read()).description === 'second');
      await h.call(owner, 'PUT', '/apps/sage/cached/1?frozen=true');
      await waitFor(async () => (await read()).frozen === true);
      await h.call(admin, 'DELETE', '/apps/sage/cached/1');
      await waitFor(async () => (await replica.inject({ method: 'GET', url: '/apps/sage/cached/1', headers: { [IDENTITY_HEADER]: sign(owner) } })).statusCode === 404);
    } finally {
      await replica.close();
    }
  });

  it('uses the namespace grant model for repositories it creates (namespace and repository owned by the submitter)', async () => {
    expect(await h.grants.list(ns('sage'))).toEqual([expect.objectContaining({ grantee: 'testuser', permission: 'FULL_CONTROL' })]);
    expect(await h.grants.list(repo('sage/simple'))).toEqual([expect.objectContaining({ grantee: 'testuser', permission: 'FULL_CONTROL' })]);
  });
});
