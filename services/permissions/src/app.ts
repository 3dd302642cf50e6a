import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService, serveRequests, serveRequestsConcurrently, servesApi, serviceDataDir, type OpenApiDocument } from '@dockyard/kit';
import {
  loadDocument,
  type IdentityResolveRequest,
  type PermissionsCheckRequest,
  type PermissionsForgetRequest,
  type PermissionsOwnRequest,
  type PermissionsVisibleReply,
  type PermissionsVisibleRequest,
  type ResourceRef,
} from '@dockyard/contracts';
import { PrismaClient } from './generated/prisma/client.js';
import type { PermissionsConfig } from './config.js';
import { Accounts } from './domain/accounts.js';
import { Groups } from './domain/groups.js';
import { Grants } from './domain/grants.js';
import { bootstrapAdmin, seedTestIdentities } from './domain/bootstrap.js';
import { accountRoutes } from './routes/accounts.js';
import { authRoutes } from './routes/auth.js';
import { permissionRoutes } from './routes/permissions.js';
import { registryTokenRoutes } from './routes/registry-token.js';
import { loadSigningKey } from './domain/registry-token.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface PermissionsApp {
  app: FastifyInstance;
  /** The admin token created on this start, if one was (printed once by server.ts). */
  newAdminToken: string | null;
}

/**
 * The permissions service: identity (accounts, tokens, sessions, groups), authorization (ECR's
 * permission model over NATS and `/permissions/...`) and the OCI registry's token service.
 */
export async function buildPermissionsApp(config: PermissionsConfig, fastify?: Partial<FastifyServerOptions>): Promise<PermissionsApp> {
  const app = await createService({
    service: 'permissions',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  // No background work here: a `worker` process only answers health and metrics.
  if (!servesApi(config)) return { app, newAdminToken: null };
  const prisma = app.db.prisma as unknown as PrismaClient;
  const doc = await loadDocument<OpenApiDocument>('permissions');
  const accounts = new Accounts(prisma, { sessionTtlMs: config.DOCKYARD_SESSION_TTL_HOURS * 3_600_000 });
  const groups = new Groups(prisma);

  // The event id doubles as the JetStream message id, so a retried publish is stored once.
  const event = (name: string, payload: Record<string, unknown>) => {
    const id = randomUUID();
    return app.events.publish(`events.permissions.${name}`, { id, occurredAt: new Date().toISOString(), ...payload }, id);
  };

  await app.register(accountRoutes, {
    doc,
    accounts,
    onRegistered: ({ userId, login }) => event('user.registered', { actor: login, resource: `user:${userId}`, userId, login, via: 'register' }),
    onConfirmed: ({ userId, login }) => event('user.confirmed', { actor: login, resource: `user:${userId}`, userId, login }),
  });
  await app.register(authRoutes, {
    doc,
    accounts,
    groups,
    onTokenRevoked: (token, by) =>
      event('token.revoked', { actor: by, resource: `token:${token.id}`, tokenId: token.id, login: token.user.login, tokenHash: token.tokenHash }),
  });

  const grants = new Grants(prisma);
  // Every service caches permission decisions (kit PermissionsClient); this event drops them.
  const grantChanged = (resource: ResourceRef, change: Record<string, unknown>, actor: string | null = null) =>
    event('grant.changed', { actor, resource: `${resource.type}:${resource.name}`, resourceType: resource.type, resourceName: resource.name, ...change });
  await app.register(permissionRoutes, {
    doc,
    grants,
    onGrantChanged: ({ resource, actor, ...change }) => grantChanged(resource, change, actor),
  });
  await app.register(registryTokenRoutes, {
    doc,
    grants,
    signing: loadSigningKey({
      keyFile: config.DOCKYARD_REGISTRY_TOKEN_KEY,
      certFile: config.DOCKYARD_REGISTRY_TOKEN_CERT,
      dir: path.join(serviceDataDir(config, 'permissions'), 'registry-token'),
    }),
    service: config.DOCKYARD_REGISTRY_TOKEN_SERVICE,
    issuer: config.DOCKYARD_REGISTRY_TOKEN_ISSUER,
    ttlSeconds: config.DOCKYARD_REGISTRY_TOKEN_TTL,
  });

  // The read-only questions are answered concurrently (each waits on the database; answered one
  // after the other, 50 callers queued ~70 ms behind each other on this machine: bench/permissions).
  // own/forget stay in order.
  serveRequestsConcurrently<IdentityResolveRequest, unknown>(app.nats, app.subjects.of('identity.resolve'), (req) => accounts.resolve(req.credential), app.log);
  serveRequestsConcurrently<PermissionsCheckRequest, { allowed: boolean }>(
    app.nats,
    app.subjects.of('permissions.check'),
    async ({ identity, action, resource }) => ({ allowed: await grants.allowed(identity, action, resource) }),
    app.log,
  );
  serveRequests<PermissionsOwnRequest, { added: number }>(
    app.nats,
    app.subjects.of('permissions.own'),
    async ({ resource, owner }) => {
      const added = await grants.add(resource, 'USER', owner, 'FULL_CONTROL', true);
      if (added) await grantChanged(resource, { operation: 'add', granteeType: 'USER', grantee: owner, permission: 'FULL_CONTROL', count: added });
      return { added };
    },
    app.log,
  );
  serveRequests<PermissionsForgetRequest, { deleted: number }>(
    app.nats,
    app.subjects.of('permissions.forget'),
    async ({ resource }) => {
      const deleted = await grants.forget(resource);
      if (deleted) await grantChanged(resource, { operation: 'delete', granteeType: null, grantee: null, permission: null, count: deleted });
      return { deleted };
    },
    app.log,
  );
  serveRequestsConcurrently<PermissionsVisibleRequest, PermissionsVisibleReply>(
    app.nats,
    app.subjects.of('permissions.visible'),
    async ({ identity, action }) => grants.visible(identity, action),
    app.log,
  );

  const newAdminToken = await bootstrapAdmin(accounts, config.DOCKYARD_ADMIN_TOKEN);
  if (config.DOCKYARD_SEED_TEST_USERS) await seedTestIdentities(accounts);
  return { app, newAdminToken };
}
