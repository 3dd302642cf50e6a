import type { Identity } from '@dockyard/kit';
import { admin, anonymous, appDoc, ns, repo, startHarness, user, type Harness } from './harness.js';

/**
 * The permission matrix for every registry endpoint: the owner, another user, anonymous, an admin,
 * a group grant, AllUsers (public) and namespace inheritance. Grants are set up through the
 * permissions service's own Grants class (its HTTP endpoints are another issue's); decisions come
 * from it over NATS (permissions.check / permissions.visible), as in production.
 */
describe('registry permission matrix (permissions service in-process, real PostgreSQL and NATS)', () => {
  let h: Harness;
  const owner = user('testuser');
  const other = user('testuser2');
  const carol = user('carol', ['science']); // GROUP science READ on sage/shared
  const dave = user('dave'); // USER dave READ on namespace sage (inherited by its repositories)
  const erin = user('erin'); // USER erin WRITE on namespace sage
  const refused = (who: Identity, level: string, what: string) =>
    `Not authorized. (${who.login ? `User ${who.login}` : 'Anonymous user'} does not have permission ${level} for ${what})`;

  const status = async (who: Identity, method: string, url: string, body?: object | string) => (await h.call(who, method, url, body)).statusCode;
  const names = (apps: { namespace: string; name: string; version: string }[]) => apps.map((a) => `${a.namespace}/${a.name}:${a.version}`).sort();

  beforeAll(async () => {
    h = await startHarness({ DOCKYARD_REGISTRY_SKIP_CLONE: '1' });
    for (const name of ['simple', 'public', 'shared']) {
      expect(await status(owner, 'POST', `/apps/sage/${name}/1.0`, appDoc())).toBe(200);
    }
    expect(await status(owner, 'POST', '/apps/pubns/open/1.0', appDoc())).toBe(200);
    await h.grants.add(repo('sage/public'), 'GROUP', 'AllUsers', 'READ');
    await h.grants.add(ns('pubns'), 'GROUP', 'AllUsers', 'READ'); // a public namespace: every repository in it
    await h.grants.add(repo('sage/shared'), 'GROUP', 'science', 'READ');
    await h.grants.add(ns('sage'), 'USER', 'dave', 'READ');
    await h.grants.add(ns('sage'), 'USER', 'erin', 'WRITE');
  });
  afterAll(async () => {
    await h?.close();
  });

  it('GET /apps/{ns}/{repo}/{ver}: READ (owner, admin, group, public, namespace grant), ECR wording otherwise', async () => {
    const matrix: [Identity, string, number][] = [
      [owner, 'simple', 200], [admin, 'simple', 200], [dave, 'simple', 200], [erin, 'simple', 200],
      [other, 'simple', 401], [anonymous, 'simple', 401], [carol, 'simple', 401],
      [carol, 'shared', 200], [other, 'shared', 401],
      [anonymous, 'public', 200], [other, 'public', 200], [carol, 'public', 200],
    ];
    for (const [who, name, code] of matrix) expect([who.login, name, await status(who, 'GET', `/apps/sage/${name}/1.0`)]).toEqual([who.login, name, code]);
    expect(await status(anonymous, 'GET', '/apps/pubns/open/1.0')).toBe(200);
    const res = await h.call(other, 'GET', '/apps/sage/simple/1.0');
    expect(res.json()).toEqual({ error: refused(other, 'READ', 'repository sage/simple') });
    expect((await h.call(anonymous, 'GET', '/apps/sage/simple/1.0')).json()).toEqual({ error: refused(anonymous, 'READ', 'repository sage/simple') });
  });

  it('answers 404 for a missing version only to callers who may know; guessing tells another user nothing', async () => {
    for (const who of [owner, admin, dave]) expect(await status(who, 'GET', '/apps/sage/simple/9.9')).toBe(404);
    expect((await h.call(owner, 'GET', '/apps/sage/simple/9.9')).json()).toEqual({ error: 'App sage/simple:9.9 not found' });
    // An existing private version, a missing version, a missing repository and a missing namespace look the same.
    const guesses = ['/apps/sage/simple/1.0', '/apps/sage/simple/9.9', '/apps/sage/nothing/1.0'];
    for (const url of guesses) expect((await h.call(other, 'GET', url)).statusCode).toBe(401);
    expect((await h.call(other, 'GET', '/apps/nothing/x/1')).json()).toEqual({ error: refused(other, 'READ', 'repository nothing/x') });
    expect(await status(admin, 'GET', '/apps/nothing/x/1')).toBe(404);
  });

  it('GET /apps/{ns}/{repo}: the version list needs READ', async () => {
    expect((await h.call(owner, 'GET', '/apps/sage/simple')).json()).toEqual([expect.objectContaining({ name: 'simple', namespace: 'sage', version: '1.0' })]);
    for (const [who, code] of [[admin, 200], [dave, 200], [other, 401], [anonymous, 401], [carol, 401]] as const) {
      expect([who.login, await status(who, 'GET', '/apps/sage/simple/')]).toEqual([who.login, code]);
    }
    expect(await status(anonymous, 'GET', '/apps/sage/public')).toBe(200);
    expect(await status(carol, 'GET', '/apps/sage/shared')).toBe(200);
    expect(await status(owner, 'GET', '/apps/sage/nothing')).toBe(404);
    expect(await status(other, 'GET', '/apps/sage/nothing')).toBe(401);
  });

  it('GET /apps, /apps/{ns}: lists only what the caller may read; public, shared and owner filters', async () => {
    const list = async (who: Identity, url: string) => names((await h.call(who, 'GET', url)).json().data);
    const everything = ['pubns/open:1.0', 'sage/public:1.0', 'sage/shared:1.0', 'sage/simple:1.0'];
    expect(await list(owner, '/apps')).toEqual(everything);
    expect(await list(admin, '/apps/')).toEqual(everything);
    expect(await list(dave, '/apps')).toEqual(everything);
    expect(await list(other, '/apps')).toEqual(['pubns/open:1.0', 'sage/public:1.0']);
    expect(await list(anonymous, '/apps')).toEqual(['pubns/open:1.0', 'sage/public:1.0']);
    expect(await list(carol, '/apps')).toEqual(['pubns/open:1.0', 'sage/public:1.0', 'sage/shared:1.0']);
    expect(await list(owner, '/apps?public=true')).toEqual(['pubns/open:1.0', 'sage/public:1.0']);
    expect(await list(owner, '/apps?public=1')).toEqual(['pubns/open:1.0', 'sage/public:1.0']);
    // shared: readable through a non-public grant, owned by someone else.
    expect(await list(carol, '/apps?shared=true')).toEqual(['sage/shared:1.0']);
    expect(await list(owner, '/apps?shared=true')).toEqual([]);
    expect(await list(anonymous, '/apps?shared=true')).toEqual([]);
    expect(await list(other, '/apps?owner=testuser')).toEqual(['pubns/open:1.0', 'sage/public:1.0']);
    expect(await list(owner, '/apps?owner=nobody')).toEqual([]);

    expect(await list(owner, '/apps/sage')).toEqual(everything.slice(1));
    expect(await list(other, '/apps/sage')).toEqual(['sage/public:1.0']);
    expect(await list(carol, '/apps/sage?shared=1')).toEqual(['sage/shared:1.0']);
    expect(await list(anonymous, '/apps/pubns')).toEqual(['pubns/open:1.0']);
    // A namespace with nothing the caller may read, or one that does not exist: 401 unless the caller could know.
    await h.call(owner, 'POST', '/apps/private/only/1', appDoc());
    expect((await h.call(other, 'GET', '/apps/private')).json()).toEqual({ error: refused(other, 'READ', 'namespace private') });
    expect(await status(other, 'GET', '/apps/missing')).toBe(401);
    expect(await status(admin, 'GET', '/apps/missing')).toBe(404);
  });

  it('POST: submitting into a repository needs WRITE on it; a new repository WRITE on the namespace; a new namespace is the submitter\'s', async () => {
    expect(await status(erin, 'POST', '/apps/sage/simple/2.0', appDoc())).toBe(200); // WRITE inherited from the namespace
    const denied: [Identity, number, string][] = [
      [dave, 401, refused(dave, 'WRITE', 'repository sage/simple')],
      [other, 401, refused(other, 'WRITE', 'repository sage/simple')],
      [carol, 401, refused(carol, 'WRITE', 'repository sage/simple')],
      [anonymous, 401, refused(anonymous, 'WRITE', 'namespace sage')],
    ];
    for (const [who, code, error] of denied) {
      const res = await h.call(who, 'POST', '/apps/sage/simple/3.0', appDoc());
      expect([who.login, res.statusCode, res.json().error]).toEqual([who.login, code, error]);
    }
    // AllUsers READ is not WRITE.
    expect((await h.call(other, 'POST', '/apps/sage/public/2.0', appDoc())).statusCode).toBe(401);
    // A new repository in someone else's namespace: WRITE on the namespace.
    const res = await h.call(other, 'POST', '/submit', appDoc({ namespace: 'sage', name: 'intruder', version: '1' }));
    expect([res.statusCode, res.json().error]).toEqual([401, refused(other, 'WRITE', 'namespace sage')]);
    expect(await h.prisma.repository.findUnique({ where: { namespace_name: { namespace: 'sage', name: 'intruder' } } })).toBeNull();
    expect(await status(erin, 'POST', '/apps/sage/erins/1', appDoc())).toBe(200);
    expect(await h.grants.list(repo('sage/erins'))).toEqual([expect.objectContaining({ grantee: 'erin', permission: 'FULL_CONTROL' })]);
    // A new namespace: created, owned by the submitter.
    expect(await status(other, 'POST', '/apps/theirs/app/1', appDoc())).toBe(200);
    expect((await h.call(other, 'GET', '/namespaces/theirs')).json()).toEqual({ id: 'theirs', owner_id: 'testuser2', repositories: [{ name: 'app', namespace: 'theirs', owner_id: 'testuser2' }] });
    expect(await status(owner, 'GET', '/apps/theirs/app/1')).toBe(401);
    expect(await status(admin, 'POST', '/apps/theirs/app/2', appDoc())).toBe(200);
  });

  it('PUT ?frozen=true needs WRITE; DELETE needs FULL_CONTROL', async () => {
    await h.call(owner, 'POST', '/apps/sage/simple/4.0', appDoc());
    for (const [who, code] of [[dave, 401], [other, 401], [anonymous, 401], [carol, 401]] as const) {
      expect([who.login, await status(who, 'PUT', '/apps/sage/simple/4.0?frozen=true')]).toEqual([who.login, code]);
    }
    expect((await h.call(dave, 'PUT', '/apps/sage/simple/4.0?frozen=true')).json()).toEqual({ error: refused(dave, 'WRITE', 'repository sage/simple') });
    expect(await status(erin, 'PUT', '/apps/sage/simple/4.0?frozen=true')).toBe(200);
    expect(await status(owner, 'PUT', '/apps/sage/simple/9.9?frozen=true')).toBe(404);

    await h.call(owner, 'POST', '/apps/sage/simple/5.0', appDoc());
    for (const [who, code] of [[erin, 401], [dave, 401], [other, 401], [anonymous, 401]] as const) {
      expect([who.login, await status(who, 'DELETE', '/apps/sage/simple/5.0')]).toEqual([who.login, code]);
    }
    expect((await h.call(erin, 'DELETE', '/apps/sage/simple/5.0')).json()).toEqual({ error: refused(erin, 'FULL_CONTROL', 'repository sage/simple') });
    expect((await h.call(owner, 'DELETE', '/apps/sage/simple/5.0')).json()).toEqual({ deleted: 1 });
    expect(await status(owner, 'DELETE', '/apps/sage/simple/5.0')).toBe(404);
    expect(await status(other, 'DELETE', '/apps/sage/simple/5.0')).toBe(401);
    await h.call(owner, 'POST', '/apps/sage/simple/6.0', appDoc());
    expect(await status(admin, 'DELETE', '/apps/sage/simple/6.0')).toBe(200);
  });

  it('GET /namespaces lists what the caller may read; PUT /namespaces creates one owned by the caller', async () => {
    const ids = async (who: Identity) => ((await h.call(who, 'GET', '/namespaces')).json() as { id: string }[]).map((n) => n.id);
    expect(await ids(owner)).toEqual(['private', 'pubns', 'sage']);
    expect(await ids(dave)).toEqual(['pubns', 'sage']);
    expect(await ids(other)).toEqual(['pubns', 'theirs']);
    expect(await ids(anonymous)).toEqual(['pubns']);
    expect((await ids(admin)).sort()).toEqual(['private', 'pubns', 'sage', 'theirs']);

    expect((await h.call(other, 'PUT', '/namespaces', { id: 'newns' })).json()).toEqual({ id: 'newns', owner_id: 'testuser2' });
    expect((await h.call(other, 'PUT', '/namespaces/', { id: 'newns' })).json()).toEqual({ id: 'newns', owner_id: 'testuser2' }); // idempotent
    // ECR's curl example sends the JSON as a form.
    const form = await h.call(other, 'PUT', '/namespaces', '{"id":"formns"}', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(form.json()).toEqual({ id: 'formns', owner_id: 'testuser2' });
    const taken = await h.call(other, 'PUT', '/namespaces', { id: 'sage' });
    expect([taken.statusCode, taken.json().error]).toEqual([409, 'Namespace sage already exists']);
    expect(await status(anonymous, 'PUT', '/namespaces', { id: 'anonns' })).toBe(401);
    const bad = await h.call(other, 'PUT', '/namespaces', { id: 'Bad Name' });
    expect([bad.statusCode, bad.json().error]).toEqual([400, "id: may hold only lower-case letters, digits, '-', '_' and '.' (starting with a letter or digit)"]);
    expect((await h.call(other, 'PUT', '/namespaces', { id: '..' })).statusCode).toBe(400);
    for (const url of ['/apps/_x/y/1', '/apps/x/.y', '/namespaces/-x', '/repositories/x/.y']) expect([url, await status(owner, 'GET', url)]).toEqual([url, 400]);
    expect((await h.call(owner, 'POST', '/apps/.y/z/1', appDoc())).statusCode).toBe(400);
    expect((await h.call(other, 'PUT', '/namespaces', {})).json().error).toBe('id: required');
    expect((await h.call(other, 'PUT', '/namespaces', { id: 'x', owner: 'y' })).json().error).toBe('Field owner not supported');
    expect(await h.grants.list(ns('newns'))).toEqual([expect.objectContaining({ grantee: 'testuser2', permission: 'FULL_CONTROL' })]);
  });

  it('GET /namespaces/{ns} needs READ on it; DELETE needs FULL_CONTROL and an empty namespace', async () => {
    const sage = await h.call(dave, 'GET', '/namespaces/sage');
    expect(sage.statusCode).toBe(200);
    expect(sage.json()).toMatchObject({ id: 'sage', owner_id: 'testuser', repositories: expect.arrayContaining([{ name: 'simple', namespace: 'sage', owner_id: 'testuser' }]) });
    for (const [who, code] of [[owner, 200], [admin, 200], [other, 401], [anonymous, 401], [carol, 401]] as const) {
      expect([who.login, await status(who, 'GET', '/namespaces/sage')]).toEqual([who.login, code]);
    }
    expect(await status(anonymous, 'GET', '/namespaces/pubns')).toBe(200);
    expect(await status(admin, 'GET', '/namespaces/missing')).toBe(404);
    expect(await status(other, 'GET', '/namespaces/missing')).toBe(401);

    for (const [who, code] of [[erin, 401], [dave, 401], [other, 401], [anonymous, 401]] as const) {
      expect([who.login, await status(who, 'DELETE', '/namespaces/sage')]).toEqual([who.login, code]);
    }
    const notEmpty = await h.call(owner, 'DELETE', '/namespaces/sage');
    expect([notEmpty.statusCode, notEmpty.json().error]).toEqual([409, 'Namespace sage is not empty']);
    expect((await h.call(other, 'DELETE', '/namespaces/newns')).json()).toEqual({ deleted: 1 });
    expect(await h.grants.list(ns('newns'))).toEqual([]); // its grants are forgotten
    expect(await status(admin, 'DELETE', '/namespaces/newns')).toBe(404);
  });

  it('GET /repositories/{ns}: the repositories the caller may read, public=1 and shared=1; GET/DELETE /repositories/{ns}/{repo}', async () => {
    const list = async (who: Identity, url: string) => ((await h.call(who, 'GET', url)).json() as { name: string }[]).map((r) => r.name);
    expect(await list(owner, '/repositories/sage')).toEqual(['erins', 'public', 'shared', 'simple']);
    expect(await list(dave, '/repositories/sage')).toEqual(['erins', 'public', 'shared', 'simple']);
    expect(await list(other, '/repositories/sage')).toEqual(['public']);
    expect(await list(anonymous, '/repositories/sage/')).toEqual(['public']);
    expect(await list(carol, '/repositories/sage')).toEqual(['public', 'shared']);
    expect(await list(owner, '/repositories/sage?public=1')).toEqual(['public']);
    expect(await list(carol, '/repositories/sage?shared=1')).toEqual(['shared']);
    expect(await list(owner, '/repositories/sage?shared=1')).toEqual(['erins']); // erin's, in testuser's namespace
    expect(await status(other, 'GET', '/repositories/private')).toBe(401);
    expect(await status(admin, 'GET', '/repositories/missing')).toBe(404);

    expect((await h.call(owner, 'GET', '/repositories/sage/simple')).json()).toEqual({ name: 'simple', namespace: 'sage', owner_id: 'testuser' });
    for (const [who, code] of [[admin, 200], [dave, 200], [other, 401], [anonymous, 401], [carol, 401]] as const) {
      expect([who.login, await status(who, 'GET', '/repositories/sage/simple')]).toEqual([who.login, code]);
    }
    expect(await status(anonymous, 'GET', '/repositories/sage/public')).toBe(200);
    expect(await status(owner, 'GET', '/repositories/sage/nothing')).toBe(404);
    expect(await status(other, 'GET', '/repositories/sage/nothing')).toBe(401);

    const hasVersions = await h.call(owner, 'DELETE', '/repositories/sage/simple');
    expect([hasVersions.statusCode, hasVersions.json().error]).toEqual([409, 'Repository sage/simple still has versions']);
    // An empty repository (the erins version deleted by its owner) can go, by FULL_CONTROL only.
    expect(await status(erin, 'DELETE', '/apps/sage/erins/1')).toBe(200);
    for (const who of [dave, other, anonymous, carol]) expect(await status(who, 'DELETE', '/repositories/sage/erins')).toBe(401);
    expect((await h.call(erin, 'DELETE', '/repositories/sage/erins')).json()).toEqual({ deleted: 1 });
    expect(await h.grants.list(repo('sage/erins'))).toEqual([]);
    expect(await status(owner, 'DELETE', '/repositories/sage/erins')).toBe(404);
  });

  it('meta files need READ like the app (404 for a file the app does not have)', async () => {
    expect((await h.call(owner, 'GET', '/meta-files/sage/simple/1.0/ecr-icon.jpg')).json()).toEqual({ error: 'Meta file ecr-icon.jpg not found for sage/simple:1.0' });
    expect(await status(other, 'GET', '/meta-files/sage/simple/1.0/ecr-icon.jpg')).toBe(401);
    expect(await status(anonymous, 'GET', '/meta-files/sage/public/1.0/ecr-icon.jpg')).toBe(404);
    expect(await status(owner, 'GET', '/meta-files/sage/simple/1.0/..%2Fx')).toBe(400);
  });
});
