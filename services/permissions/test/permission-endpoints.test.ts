import type { FastifyInstance } from 'fastify';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { ANONYMOUS, IDENTITY_HEADER, PermissionsClient, identitySigner, request, type Identity } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { rawDocument, type ResourceRef } from '@dockyard/contracts';
import { buildPermissionsApp } from '../src/app.js';
import { loadPermissionsConfig } from '../src/config.js';

const person = (login: string, groups: string[] = [], admin = false): Identity => ({ id: `u-${login}`, login, admin, approved: true, groups, roles: [] });
const testuser = person('testuser');
const testuser2 = person('testuser2');
const carol = person('carol', ['auditors']);
const root = person('root', [], true);
const repo = (name: string): ResourceRef => ({ type: 'repository', name });
const ns = (name: string): ResourceRef => ({ type: 'namespace', name });
const grant = (grantee: string, permission: string, resourceName: string, granteeType = 'USER') => ({
  grantee,
  granteeType,
  permission,
  resourceName,
  resourceType: resourceName.includes('/') ? 'repository' : 'namespace',
});

/** Polls a condition that becomes true asynchronously (an event's delivery); fails after 10 s. */
async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    if (await condition()) return;
  }
  throw new Error('condition not reached within 10 s');
}

describe("ECR's /permissions endpoints (real PostgreSQL and NATS)", () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let sign: (identity: Identity) => string;
  const events: Record<string, unknown>[] = [];

  const headers = (identity: Identity, contentType?: string) => ({ [IDENTITY_HEADER]: sign(identity), ...(contentType ? { 'content-type': contentType } : {}) });
  const get = (identity: Identity, path: string) => app.inject({ url: `/permissions/${path}`, headers: headers(identity) });
  // ECR's clients: `curl -X PUT -d '{"operation": ...}'`, i.e. JSON text under the form content type.
  const put = (identity: Identity, path: string, body: unknown, contentType = 'application/x-www-form-urlencoded') =>
    app.inject({ method: 'PUT', url: `/permissions/${path}`, headers: headers(identity, contentType), payload: typeof body === 'string' ? body : JSON.stringify(body) });
  const add = (identity: Identity, path: string, granteeType: string, grantee: string, permission: string) =>
    put(identity, path, { operation: 'add', granteeType, grantee, permission });

  beforeAll(async () => {
    env = testEnv();
    const config = loadPermissionsConfig(env.serviceEnv('permissions'));
    ({ app } = await buildPermissionsApp(config));
    await app.ready();
    sign = identitySigner(config.DOCKYARD_INTERNAL_SECRET);
    const sub = app.nats.subscribe(app.subjects.of('events.permissions.grant.changed'));
    void (async () => {
      for await (const m of sub) events.push(m.json());
    })();
    // What the registry does when namespaces and repositories are created.
    const own = (resource: ResourceRef, owner: string) => request(app.nats, app.subjects.of('permissions.own'), { resource, owner });
    await own(ns('sage'), 'testuser');
    await own(repo('sage/simple'), 'testuser');
    await own(repo('sage/other'), 'testuser');
    await own(ns('lab'), 'testuser2');
    await own(repo('lab/tool'), 'testuser2');
  });
  afterAll(async () => {
    await app.close();
    await env.cleanup();
  });

  it('lets the owner and an admin read the grants; refuses everyone else in ECR words', async () => {
    for (const who of [testuser, root]) {
      const res = await get(who, 'sage/simple');
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual([grant('testuser', 'FULL_CONTROL', 'sage/simple')]);
    }
    const other = await get(testuser2, 'sage/simple');
    expect(other.statusCode).toBe(401);
    expect(other.json()).toEqual({ error: 'Not authorized. (User testuser2 does not have permission READ_ACP for repository sage/simple)' });
    const anonymous = await get(ANONYMOUS, 'sage');
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json()).toEqual({ error: 'Not authorized. (Anonymous user does not have permission READ_ACP for namespace sage)' });
    expect((await get(testuser, 'sage')).json()).toEqual([grant('testuser', 'FULL_CONTROL', 'sage')]);
    // Changing grants refuses the same way, before anything is looked up.
    const change = await add(testuser2, 'sage/simple', 'USER', 'testuser2', 'FULL_CONTROL');
    expect(change.statusCode).toBe(401);
    expect(change.json()).toEqual({ error: 'Not authorized. (User testuser2 does not have permission WRITE_ACP for repository sage/simple)' });
    expect((await add(ANONYMOUS, 'sage', 'GROUP', 'AllUsers', 'READ')).statusCode).toBe(401);
  });

  it('answers 404 for what does not exist only to callers who could know it (admin, namespace READ_ACP)', async () => {
    expect((await get(root, 'sage/nope')).json()).toEqual({ error: 'Repository sage/nope not found' });
    expect((await get(testuser, 'sage/nope')).statusCode).toBe(404); // namespace owner
    expect((await get(root, 'nowhere')).json()).toEqual({ error: 'Namespace nowhere not found' });
    expect((await add(testuser, 'sage/nope', 'USER', 'x', 'READ')).statusCode).toBe(404);
    // Someone without rights learns nothing: the same 401 as for an existing repository.
    const guess = await get(testuser2, 'sage/nope');
    expect(guess.statusCode).toBe(401);
    expect(guess.json().error).toContain('READ_ACP for repository sage/nope');
  });

  it("adds grants ({added: n}, 0 when present) with ECR's level hierarchy", async () => {
    expect((await add(testuser, 'sage/simple', 'USER', 'testuser2', 'READ')).json()).toEqual({ added: 1 });
    expect((await add(testuser, 'sage/simple', 'USER', 'testuser2', 'READ')).json()).toEqual({ added: 0 });
    // READ does not let one read the grants; READ_ACP does; WRITE_ACP is still needed to change them.
    expect((await get(testuser2, 'sage/simple')).statusCode).toBe(401);
    expect((await add(testuser, 'sage/simple', 'USER', 'testuser2', 'READ_ACP')).json()).toEqual({ added: 1 });
    const listed = await get(testuser2, 'sage/simple');
    expect(listed.statusCode).toBe(200);
    expect(listed.json()).toEqual([
      grant('testuser', 'FULL_CONTROL', 'sage/simple'),
      grant('testuser2', 'READ', 'sage/simple'),
      grant('testuser2', 'READ_ACP', 'sage/simple'),
    ]);
    expect((await add(testuser2, 'sage/simple', 'USER', 'testuser2', 'WRITE')).statusCode).toBe(401);
  });

  it('applies group grants and GROUP AllUsers (anonymous callers included)', async () => {
    expect((await get(carol, 'sage/other')).statusCode).toBe(401);
    expect((await add(testuser, 'sage/other', 'GROUP', 'auditors', 'WRITE_ACP')).json()).toEqual({ added: 1 });
    // WRITE_ACP implies READ_ACP; carol acts through her group.
    expect((await get(carol, 'sage/other')).statusCode).toBe(200);
    expect((await add(carol, 'sage/other', 'GROUP', 'AllUsers', 'READ_ACP')).json()).toEqual({ added: 1 });
    const anonymous = await get(ANONYMOUS, 'sage/other');
    expect(anonymous.statusCode).toBe(200);
    expect(anonymous.json()).toContainEqual(grant('AllUsers', 'READ_ACP', 'sage/other', 'GROUP'));
    expect((await add(ANONYMOUS, 'sage/other', 'GROUP', 'AllUsers', 'WRITE_ACP')).statusCode).toBe(401);
  });

  it("inherits namespace grants into the namespace's repositories", async () => {
    expect((await get(testuser, 'lab/tool')).statusCode).toBe(401);
    expect((await add(testuser2, 'lab', 'USER', 'testuser', 'WRITE_ACP')).json()).toEqual({ added: 1 });
    expect((await get(testuser2, 'lab')).json()).toEqual([grant('testuser2', 'FULL_CONTROL', 'lab'), grant('testuser', 'WRITE_ACP', 'lab')]);
    // The namespace grant reaches the repository, but is not listed among the repository's own.
    expect((await get(testuser, 'lab/tool')).json()).toEqual([grant('testuser2', 'FULL_CONTROL', 'lab/tool')]);
    expect((await add(testuser, 'lab/tool', 'USER', 'carol', 'READ')).json()).toEqual({ added: 1 });
    // A repository grant does not reach up to the namespace.
    expect((await get(carol, 'lab')).statusCode).toBe(401);
  });

  it("deletes one grant or every grant but the owner's, and never the owner's", async () => {
    const owners = await put(testuser, 'sage/simple', { operation: 'delete', granteeType: 'USER', grantee: 'testuser', permission: 'FULL_CONTROL' });
    expect(owners.statusCode).toBe(400);
    expect(owners.json()).toEqual({ error: "The owner's grant (USER testuser FULL_CONTROL) cannot be removed" });
    expect((await put(testuser, 'sage/simple', { operation: 'delete', granteeType: 'USER', grantee: 'testuser2', permission: 'READ' })).json()).toEqual({ deleted: 1 });
    expect((await put(testuser, 'sage/simple', { operation: 'delete', granteeType: 'USER', grantee: 'testuser2', permission: 'READ' })).json()).toEqual({ deleted: 0 });
    await add(testuser, 'sage/simple', 'GROUP', 'AllUsers', 'READ');
    await add(testuser, 'sage/simple', 'USER', 'carol', 'WRITE');
    expect((await put(testuser, 'sage/simple', { operation: 'delete' })).json()).toEqual({ deleted: 3 }); // testuser2 READ_ACP, AllUsers, carol
    expect((await get(testuser, 'sage/simple')).json()).toEqual([grant('testuser', 'FULL_CONTROL', 'sage/simple')]);
    expect((await put(testuser, 'sage/simple', { operation: 'delete' })).json()).toEqual({ deleted: 0 });
    // An admin may change anyone's grants, but the owner's stays.
    expect((await put(root, 'lab', { operation: 'delete' })).json()).toEqual({ deleted: 1 });
    expect((await get(root, 'lab')).json()).toEqual([grant('testuser2', 'FULL_CONTROL', 'lab')]);
  });

  it('reads the JSON body under any content type, and names the field of a bad one (ECR answered 500)', async () => {
    const body = { operation: 'add', granteeType: 'USER', grantee: 'dana', permission: 'READ' };
    expect((await put(testuser, 'sage/other', body, 'application/json')).json()).toEqual({ added: 1 });
    expect((await put(testuser, 'sage/other', body, 'text/plain')).json()).toEqual({ added: 0 });
    const bare = await app.inject({ method: 'PUT', url: '/permissions/sage/other', headers: headers(testuser), payload: JSON.stringify({ ...body, grantee: 'erin' }) });
    expect(bare.json()).toEqual({ added: 1 });

    const bad = async (payload: unknown, contentType?: string) => {
      const res = await put(testuser, 'sage/other', payload, contentType);
      expect(res.statusCode).toBe(400);
      return res.json().error as string;
    };
    expect(await bad({ operation: 'share' })).toBe('operation must be one of: add, delete');
    expect(await bad({ ...body, granteeType: 'TEAM' })).toBe('granteeType must be one of: USER, GROUP');
    expect(await bad({ ...body, permission: 'ADMIN' })).toBe('permission must be one of: READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL');
    expect(await bad({ ...body, grantee: '' })).toBe('grantee must NOT have fewer than 1 characters');
    expect(await bad({ ...body, grantee: 'x'.repeat(300) })).toBe('grantee must NOT have more than 256 characters');
    expect(await bad({ operation: 'add', granteeType: 'USER', grantee: 'dana' })).toBe('Field permission is required');
    expect(await bad({ operation: 'delete', granteeType: 'USER', permission: 'READ' })).toBe('Field grantee is required');
    expect(await bad({ granteeType: 'USER' })).toBe('Field operation is required');
    expect(await bad('')).toBe('Field operation is required');
    expect(await bad('operation=add&granteeType=USER')).toMatch(/^Body must be a JSON object/);
    expect(await bad('["add"]', 'application/json')).toBe('body must be object');
    const large = await put(testuser, 'sage/other', { ...body, grantee: 'y'.repeat(20_000) });
    expect(large.statusCode).toBe(413);
    expect(large.json()).toEqual({ error: 'Request body is too large' });
    const badName = await get(testuser, 'Sage/other');
    expect(badName.statusCode).toBe(400);
    expect(badName.json().error).toBe('params/namespace must match pattern "^[a-z0-9._-]+$"');
  });

  it('publishes events.permissions.grant.changed for every change, in the events.yaml shape', async () => {
    const before = events.length;
    await add(testuser, 'sage/other', 'USER', 'frank', 'WRITE');
    await add(testuser, 'sage/other', 'USER', 'frank', 'WRITE'); // no change, no event
    await put(testuser, 'sage/other', { operation: 'delete' });
    await waitFor(async () => events.length >= before + 2);
    await app.nats.flush();
    const [added, deleted] = events.slice(before);
    expect(events).toHaveLength(before + 2);
    expect(added).toMatchObject({
      actor: 'testuser',
      resource: 'repository:sage/other',
      resourceType: 'repository',
      resourceName: 'sage/other',
      operation: 'add',
      granteeType: 'USER',
      grantee: 'frank',
      permission: 'WRITE',
      count: 1,
    });
    expect(deleted).toMatchObject({ operation: 'delete', granteeType: null, grantee: null, permission: null, resourceName: 'sage/other' });
    expect(deleted.count).toBeGreaterThanOrEqual(4); // auditors, AllUsers, dana, erin, frank

    const doc = rawDocument('events') as { components: { schemas: Record<string, unknown> } };
    const ajv = new Ajv2020({ strict: false });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    const validate = ajv.compile(doc.components.schemas.GrantChanged as object);
    for (const payload of events) expect({ payload, valid: validate(payload), errors: validate.errors ?? null }).toEqual({ payload, valid: true, errors: null });
    // own (the registry's creations) published too, with the system or owner as actor.
    expect(events.filter((e) => e.grantee === 'testuser' && e.permission === 'FULL_CONTROL')).toHaveLength(3);
  });

  it("drops every PermissionsClient's cached decisions when grants change over HTTP", async () => {
    const client = new PermissionsClient(app.nats, app.subjects, { ttlMs: 600_000 });
    const gina = person('gina');
    expect(await client.allowed(gina, 'WRITE', repo('sage/simple'))).toBe(false);
    expect((await add(testuser, 'sage', 'USER', 'gina', 'WRITE')).json()).toEqual({ added: 1 });
    await waitFor(async () => (await client.allowed(gina, 'WRITE', repo('sage/simple'))) === true);
    expect((await put(testuser, 'sage', { operation: 'delete', granteeType: 'USER', grantee: 'gina', permission: 'WRITE' })).json()).toEqual({ deleted: 1 });
    await waitFor(async () => (await client.allowed(gina, 'WRITE', repo('sage/simple'))) === false);
  });
});
