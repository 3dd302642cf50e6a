import type { FastifyInstance } from 'fastify';
import { ANONYMOUS, PermissionsClient, request } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import type { PermissionLevel, PermissionsCheckRequest, ResourceRef } from '@dockyard/contracts';
import { buildPermissionsApp } from '../src/app.js';
import { loadPermissionsConfig } from '../src/config.js';
import { Grants } from '../src/domain/grants.js';
import type { PrismaClient } from '../src/generated/prisma/client.js';

const repo = (name: string): ResourceRef => ({ type: 'repository', name });
const ns = (name: string): ResourceRef => ({ type: 'namespace', name });
const user = (login: string, groups: string[] = []) => ({ login, admin: false, groups });
const anonymous = { login: null, admin: false, groups: [] };

/** Polls a condition that becomes true asynchronously (an event's delivery); fails after 10 s. */
async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    if (await condition()) return;
  }
  throw new Error('condition not reached within 10 s');
}

describe("ECR's permission model (permissions.check over real NATS, grants in PostgreSQL)", () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let grants: Grants;
  const ask = async (identity: PermissionsCheckRequest['identity'], action: PermissionLevel, resource: ResourceRef) =>
    (await request<PermissionsCheckRequest, { allowed: boolean }>(app.nats, app.subjects.of('permissions.check'), { identity, action, resource })).allowed;

  beforeAll(async () => {
    env = testEnv();
    ({ app } = await buildPermissionsApp(loadPermissionsConfig(env.serviceEnv('permissions'))));
    await app.ready();
    grants = new Grants(app.db.prisma as unknown as PrismaClient);
    for (const resource of [ns('sage'), repo('sage/simple'), repo('sage/other')]) {
      expect(await request(app.nats, app.subjects.of('permissions.own'), { resource, owner: 'testuser' })).toEqual({ added: 1 });
    }
  });
  afterAll(async () => {
    await app.close();
    await env.cleanup();
  });

  it("gives the owner every level and nobody else anything", async () => {
    for (const level of ['READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL'] as const) {
      expect(await ask(user('testuser'), level, repo('sage/simple'))).toBe(true);
      expect(await ask(user('testuser2'), level, repo('sage/simple'))).toBe(false);
      expect(await ask(anonymous, level, repo('sage/simple'))).toBe(false);
    }
    expect(await ask({ login: 'root', admin: true, groups: [] }, 'FULL_CONTROL', repo('sage/simple'))).toBe(true);
  });

  it('makes a repository public with GROUP AllUsers READ, for anonymous callers too', async () => {
    expect(await grants.add(repo('sage/simple'), 'GROUP', 'AllUsers', 'READ')).toBe(1);
    expect(await grants.add(repo('sage/simple'), 'GROUP', 'AllUsers', 'READ')).toBe(0);
    expect(await ask(anonymous, 'READ', repo('sage/simple'))).toBe(true);
    expect(await ask(user('testuser2'), 'READ', repo('sage/simple'))).toBe(true);
    expect(await ask(anonymous, 'WRITE', repo('sage/simple'))).toBe(false);
    expect(await ask(anonymous, 'READ', repo('sage/other'))).toBe(false);
  });

  it('inherits namespace grants into its repositories and applies the level hierarchy', async () => {
    await grants.add(ns('sage'), 'USER', 'testuser2', 'WRITE');
    expect(await ask(user('testuser2'), 'WRITE', repo('sage/other'))).toBe(true);
    expect(await ask(user('testuser2'), 'READ', repo('sage/other'))).toBe(true); // WRITE implies READ
    expect(await ask(user('testuser2'), 'READ_ACP', repo('sage/other'))).toBe(false);
    await grants.add(repo('sage/other'), 'GROUP', 'auditors', 'WRITE_ACP');
    expect(await ask(user('carol', ['auditors']), 'READ_ACP', repo('sage/other'))).toBe(true); // WRITE_ACP implies READ_ACP
    expect(await ask(user('carol', ['auditors']), 'READ', repo('sage/other'))).toBe(false);
    expect(await ask(user('carol', ['other-group']), 'READ_ACP', repo('sage/other'))).toBe(false);
  });

  it("lists grants in ECR's shape; deleting all keeps the owner's", async () => {
    await grants.add(repo('sage/simple'), 'USER', 'OtherUser', 'READ');
    expect(await grants.remove(repo('sage/simple'), { granteeType: 'USER', grantee: 'OtherUser', permission: 'READ' })).toBe(1);
    expect(await grants.remove(repo('sage/simple'))).toBe(1); // AllUsers READ
    expect(await grants.list(repo('sage/simple'))).toEqual([
      { grantee: 'testuser', granteeType: 'USER', permission: 'FULL_CONTROL', resourceName: 'sage/simple', resourceType: 'repository' },
    ]);
    // The owner's grant cannot be removed by naming it either.
    expect(await grants.remove(repo('sage/simple'), { granteeType: 'USER', grantee: 'testuser', permission: 'FULL_CONTROL' })).toBe(0);
  });

  it('tells which namespaces and repositories an identity may act on (for listings)', async () => {
    const visible = (identity: PermissionsCheckRequest['identity'], action: PermissionLevel) =>
      request(app.nats, app.subjects.of('permissions.visible'), { identity, action });
    expect(await visible(user('testuser'), 'FULL_CONTROL')).toEqual({ all: false, namespaces: ['sage'], repositories: ['sage/other', 'sage/simple'] });
    // testuser2 holds WRITE on the namespace (so READ on every repository in it), nothing at READ_ACP.
    expect(await visible(user('testuser2'), 'READ')).toEqual({ all: false, namespaces: ['sage'], repositories: [] });
    expect(await visible(user('testuser2'), 'READ_ACP')).toEqual({ all: false, namespaces: [], repositories: [] });
    expect(await visible(user('carol', ['auditors']), 'READ_ACP')).toEqual({ all: false, namespaces: [], repositories: ['sage/other'] });
    expect(await visible(anonymous, 'READ')).toEqual({ all: false, namespaces: [], repositories: [] });
    expect(await visible({ login: 'root', admin: true, groups: [] }, 'READ')).toMatchObject({ all: true });
  });

  it('lets callers cache decisions, and drops them when grants change anywhere', async () => {
    const client = new PermissionsClient(app.nats, app.subjects, { ttlMs: 600_000 });
    const dave = { ...ANONYMOUS, id: 'u-dave', login: 'dave' };
    expect(await client.allowed(dave, 'READ', repo('sage/simple'))).toBe(false);
    await expect(client.require(dave, 'READ', repo('sage/simple'))).rejects.toMatchObject({
      statusCode: 401,
      message: 'Not authorized. (User dave does not have permission READ for repository sage/simple)',
    });
    // Ownership given by another process: the grant.changed event reaches this client's cache.
    await request(app.nats, app.subjects.of('permissions.own'), { resource: repo('sage/simple'), owner: 'dave' });
    await waitFor(async () => (await client.allowed(dave, 'READ', repo('sage/simple'))) === true);
    // Through the client itself the change is visible at once, event or not.
    await client.forget(repo('sage/simple'));
    expect(await client.allowed(dave, 'READ', repo('sage/simple'))).toBe(false);
    await client.own(repo('sage/simple'), 'testuser');
  });

  it('forgets a deleted namespace with its repositories, and refuses malformed names', async () => {
    expect(await request(app.nats, app.subjects.of('permissions.forget'), { resource: ns('sage') })).toEqual({ deleted: 5 });
    expect(await ask(user('testuser'), 'READ', repo('sage/simple'))).toBe(false);
    await expect(grants.add(repo('sage'), 'USER', 'x', 'READ')).rejects.toMatchObject({ statusCode: 400 });
    await expect(ask(user('x'), 'READ', repo('../etc'))).rejects.toThrow(/Invalid repository name/);
  });
});
