import { ANONYMOUS, IDENTITY_HEADER, identitySigner, request, type Identity } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { rawDocument, type IdentityResolveReply } from '@dockyard/contracts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import { buildPermissionsApp } from '../src/app.js';
import { Accounts } from '../src/domain/accounts.js';
import type { PrismaClient } from '../src/generated/prisma/client.js';
import { loadPermissionsConfig } from '../src/config.js';

describe('permissions service: accounts, sessions, tokens (real PostgreSQL and NATS)', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let sign: (identity: Identity) => string;
  let adminToken: string | null;

  const resolve = (credential: object) => request<object, IdentityResolveReply>(app.nats, app.subjects.of('identity.resolve'), { credential });
  const as = (identity: Identity) => ({ [IDENTITY_HEADER]: sign(identity) });
  const anonymous = () => as(ANONYMOUS);
  // What `curl -d` and Python requests' `data=` send.
  const form = () => ({ ...anonymous(), 'content-type': 'application/x-www-form-urlencoded' });
  async function identityOf(credential: object): Promise<Identity> {
    const reply = await resolve(credential);
    if (!reply.identity) throw new Error(reply.reason);
    return reply.identity;
  }

  const events: { subject: string; payload: Record<string, unknown> }[] = [];

  beforeAll(async () => {
    env = testEnv();
    const config = loadPermissionsConfig(env.serviceEnv('permissions', { DOCKYARD_SEED_TEST_USERS: '1' }));
    ({ app, newAdminToken: adminToken } = await buildPermissionsApp(config));
    await app.ready();
    sign = identitySigner(config.DOCKYARD_INTERNAL_SECRET);
    const sub = app.nats.subscribe(app.subjects.of('events.permissions.>'));
    void (async () => {
      for await (const m of sub) events.push({ subject: m.subject.slice(env.env.DOCKYARD_NATS_PREFIX.length), payload: m.json() });
    })();
  });
  afterAll(async () => {
    await app.close();
    await env.cleanup();
  });

  it('creates an admin on first start and prints its token once', async () => {
    expect(adminToken).toMatch(/^dky_/);
    const admin = await identityOf({ scheme: 'token', token: adminToken });
    expect(admin).toMatchObject({ login: 'admin', admin: true, approved: true });
  });

  it("seeds ECR's fixed test identities", async () => {
    expect(await identityOf({ scheme: 'token', token: 'testuser_token' })).toMatchObject({ login: 'testuser', admin: false, approved: true });
    expect(await identityOf({ scheme: 'token', token: 'notapproved_token' })).toMatchObject({ login: 'notapproved', approved: false });
    expect(await identityOf({ scheme: 'token', token: 'admin_token' })).toMatchObject({ admin: true });
    expect(await resolve({ scheme: 'token', token: 'nobody_token' })).toEqual({ identity: null, reason: 'Token not found' });
  });

  it('registers, confirms, logs in with a session cookie and logs out (Kabuto)', async () => {
    const reg = await app.inject({ method: 'POST', url: '/register', headers: form(), payload: 'login=me&password=SecreT&email=me%40example.com' });
    expect(reg.statusCode).toBe(200);
    const { status, token } = reg.json();
    expect(status).toBe('success');

    const early = await app.inject({ method: 'POST', url: '/login', headers: anonymous(), payload: { login: 'me', password: 'SecreT' } });
    expect(early.statusCode).toBe(403);
    expect(early.json()).toEqual({ error: 'Account me is not confirmed' });

    const wrongConfirm = await app.inject({ url: '/register/confirm/me/not-the-token', headers: anonymous() });
    expect(wrongConfirm.statusCode).toBe(404);
    expect(wrongConfirm.json()).toEqual({ error: 'user or token not found', registration: 'user or token not found' });
    const confirm = await app.inject({ url: `/register/confirm/me/${token}`, headers: anonymous() });
    expect(confirm.json()).toEqual({ registration: 'success' });

    const wrong = await app.inject({ method: 'POST', url: '/login', headers: form(), payload: 'login=me&password=nope' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json()).toEqual({ error: 'Wrong login or password' });
    const unknown = await app.inject({ method: 'POST', url: '/login', headers: form(), payload: 'login=ghost&password=nope' });
    expect(unknown.json()).toEqual({ error: 'Wrong login or password' });
    // Same work for an unknown login as for a wrong password (one argon2 verification each), so
    // response times do not tell which logins exist.
    const verified: string[] = [];
    const counting = new Accounts(app.db.prisma as unknown as PrismaClient, { sessionTtlMs: 1000 }, {
      hash: (p) => argon2Hash(p),
      verify: async (h, p) => {
        verified.push(h);
        return argon2Verify(h, p);
      },
    });
    await expect(counting.checkPassword('me', 'nope')).rejects.toMatchObject({ statusCode: 401 });
    await expect(counting.checkPassword('ghost', 'nope')).rejects.toMatchObject({ statusCode: 401 });
    expect(verified).toHaveLength(2);
    expect(verified.every((h) => h.startsWith('$argon2'))).toBe(true);

    const login = await app.inject({ method: 'POST', url: '/login', headers: form(), payload: 'login=me&password=SecreT' });
    expect(login.statusCode).toBe(200);
    expect(login.json()).toEqual({ login: 'success' });
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toMatch(/^session=[^;]+; Path=\/; Expires=.*; HttpOnly; SameSite=Lax$/);
    const session = /^session=([^;]+)/.exec(cookie)![1];
    expect(await identityOf({ scheme: 'session', session })).toMatchObject({ login: 'me', admin: false, approved: false });
    expect(await identityOf({ scheme: 'basic', login: 'me', password: 'SecreT' })).toMatchObject({ login: 'me' });
    expect(await resolve({ scheme: 'basic', login: 'me', password: 'bad' })).toEqual({ identity: null, reason: 'Wrong login or password' });

    const logout = await app.inject({ method: 'POST', url: '/logout', headers: { ...anonymous(), cookie: `session=${session}` } });
    expect(logout.json()).toEqual({ logout: 'success' });
    expect(String(logout.headers['set-cookie'])).toContain('Expires=Thu, 01 Jan 1970');
    expect(await resolve({ scheme: 'session', session })).toEqual({ identity: null, reason: 'Session expired or unknown' });
  });

  it('refuses a duplicate login and names a bad field', async () => {
    const first = await app.inject({ method: 'POST', url: '/register', headers: anonymous(), payload: { login: 'dup', password: 'pw12', email: 'd@example.com' } });
    expect(first.statusCode).toBe(200);
    const again = await app.inject({ method: 'POST', url: '/register', headers: anonymous(), payload: { login: 'dup', password: 'pw12', email: 'd@example.com' } });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toEqual({ error: 'Login dup is already taken' });
    const noEmail = await app.inject({ method: 'POST', url: '/register', headers: anonymous(), payload: { login: 'x', password: 'pw12' } });
    expect(noEmail.statusCode).toBe(400);
    expect(noEmail.json()).toEqual({ error: 'Field email is required' });
  });

  it('validates bodies against the OpenAPI document (field named in the 400)', async () => {
    const badLogin = await app.inject({ method: 'POST', url: '/register', headers: anonymous(), payload: { login: 'bad/login', password: 'pw', email: 'b@example.com' } });
    expect(badLogin.statusCode).toBe(400);
    expect(badLogin.json().error).toMatch(/^login must match pattern/);
    const badEmail = await app.inject({ method: 'POST', url: '/register', headers: anonymous(), payload: { login: 'ok', password: 'pw', email: 'not-an-email' } });
    expect(badEmail.json().error).toBe('email must match format "email"');
    const testuser = await identityOf({ scheme: 'token', token: 'testuser_token' });
    const badDate = await app.inject({ method: 'POST', url: '/auth/tokens', headers: as(testuser), payload: { name: 't', expiresAt: 'tomorrow' } });
    expect(badDate.statusCode).toBe(400);
    expect(badDate.json().error).toBe('expiresAt must match format "date-time"');
    // Responses are serialized by their schema: nothing outside the documented shape leaks out.
    const me = await app.inject({ url: '/auth/whoami', headers: as(testuser) });
    expect(Object.keys(me.json()).sort()).toEqual(['admin', 'approved', 'groups', 'id', 'login']);
  });

  it('creates, lists and revokes API tokens; a revoked token no longer resolves', async () => {
    const testuser = await identityOf({ scheme: 'token', token: 'testuser_token' });
    const created = await app.inject({ method: 'POST', url: '/auth/tokens', headers: as(testuser), payload: { name: 'laptop' } });
    expect(created.statusCode).toBe(201);
    const { token, id, prefix } = created.json();
    expect(token.startsWith(prefix)).toBe(true);
    expect(await identityOf({ scheme: 'token', token })).toMatchObject({ login: 'testuser' });

    const list = await app.inject({ url: '/auth/tokens', headers: as(testuser) });
    const listed = list.json().find((t: { id: string }) => t.id === id);
    expect(listed).toMatchObject({ name: 'laptop', login: 'testuser', revokedAt: null });
    expect(listed.token).toBeUndefined();
    expect(JSON.stringify(list.json())).not.toContain(token);

    const other = await identityOf({ scheme: 'token', token: 'testuser2_token' });
    expect((await app.inject({ method: 'DELETE', url: `/auth/tokens/${id}`, headers: as(other) })).statusCode).toBe(404);
    expect((await app.inject({ url: '/auth/tokens?login=testuser', headers: as(other) })).statusCode).toBe(403);

    const revoked = await app.inject({ method: 'DELETE', url: `/auth/tokens/${id}`, headers: as(testuser) });
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json().revokedAt).toEqual(expect.any(String));
    expect(await resolve({ scheme: 'token', token })).toEqual({ identity: null, reason: 'Token not found' });
  });

  it('takes an API token as the Basic password (docker login), whatever login comes with it', async () => {
    const testuser = await identityOf({ scheme: 'token', token: 'testuser_token' });
    expect(await identityOf({ scheme: 'basic', login: 'testuser', password: 'testuser_token' })).toMatchObject({ login: 'testuser' });
    expect(await identityOf({ scheme: 'basic', login: 'anything', password: 'testuser_token' })).toMatchObject({ login: 'testuser' });
    const created = await app.inject({ method: 'POST', url: '/auth/tokens', headers: as(testuser), payload: { name: 'docker' } });
    const { token, id } = created.json();
    expect(await identityOf({ scheme: 'basic', login: 'testuser', password: token })).toMatchObject({ login: 'testuser' });
    await app.inject({ method: 'DELETE', url: `/auth/tokens/${id}`, headers: as(testuser) });
    // A revoked token is just a wrong password.
    expect(await resolve({ scheme: 'basic', login: 'testuser', password: token })).toEqual({ identity: null, reason: 'Wrong login or password' });
  });

  it('keeps user and group administration to admins, and groups appear in identities', async () => {
    const admin = await identityOf({ scheme: 'token', token: 'admin_token' });
    const testuser = await identityOf({ scheme: 'token', token: 'testuser_token' });
    expect((await app.inject({ url: '/auth/users', headers: as(testuser) })).statusCode).toBe(403);
    expect((await app.inject({ url: '/auth/users', headers: anonymous() })).statusCode).toBe(401);
    const users = await app.inject({ url: '/auth/users', headers: as(admin) });
    expect(users.json().map((u: { login: string }) => u.login)).toEqual(expect.arrayContaining(['admin', 'testuser', 'notapproved']));

    expect((await app.inject({ method: 'POST', url: '/auth/groups', headers: as(admin), payload: { name: 'sage-devs' } })).statusCode).toBe(201);
    const added = await app.inject({ method: 'PUT', url: '/auth/groups/sage-devs/members/testuser', headers: as(admin) });
    expect(added.json()).toEqual({ name: 'sage-devs', members: ['testuser'] });
    expect((await identityOf({ scheme: 'token', token: 'testuser_token' })).groups).toEqual(['sage-devs']);

    const approve = await app.inject({ method: 'PATCH', url: '/auth/users/notapproved', headers: as(testuser), payload: { approved: true } });
    expect(approve.statusCode).toBe(403);
    const disabled = await app.inject({ method: 'PATCH', url: '/auth/users/testuser2', headers: as(admin), payload: { disabled: true } });
    expect(disabled.json()).toMatchObject({ login: 'testuser2', disabled: true });
    expect(await resolve({ scheme: 'token', token: 'testuser2_token' })).toEqual({ identity: null, reason: 'Account testuser2 is disabled' });
  });

  it('publishes its events in the shapes openapi/events.yaml gives', async () => {
    await app.nats.flush();
    const doc = rawDocument('events') as { components: { schemas: Record<string, { 'x-subject'?: string }> } };
    const ajv = new Ajv2020({ strict: false });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema(schema, name);
    const schemaFor = (subject: string) => Object.entries(doc.components.schemas).find(([, s]) => s['x-subject'] === subject)?.[0];
    const subjects = new Set(events.map((e) => e.subject));
    expect([...subjects].sort()).toEqual(['events.permissions.token.revoked', 'events.permissions.user.confirmed', 'events.permissions.user.registered']);
    for (const { subject, payload } of events) {
      const validate = ajv.getSchema(schemaFor(subject)!)!;
      expect({ subject, valid: validate(payload), errors: validate.errors ?? null }).toEqual({ subject, valid: true, errors: null });
    }
    const registered = events.find((e) => e.subject.endsWith('user.registered') && e.payload.login === 'me')!;
    expect(registered.payload).toMatchObject({ actor: 'me', via: 'register', resource: `user:${registered.payload.userId}` });
  });
});
