import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { createService, serveRequests, type OpenApiDocument } from '@dockyard/kit';
import { loadDocument, type IdentityResolveRequest } from '@dockyard/contracts';
import { PrismaClient } from './generated/prisma/client.js';
import type { PermissionsConfig } from './config.js';
import { Accounts } from './domain/accounts.js';
import { Groups } from './domain/groups.js';
import { bootstrapAdmin, seedTestIdentities } from './domain/bootstrap.js';
import { accountRoutes } from './routes/accounts.js';
import { authRoutes } from './routes/auth.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface PermissionsApp {
  app: FastifyInstance;
  /** The admin token created on this start, if one was (printed once by server.ts). */
  newAdminToken: string | null;
}

/** The permissions service: identity (accounts, tokens, sessions, groups) and, later, authorization. */
export async function buildPermissionsApp(config: PermissionsConfig, fastify?: Partial<FastifyServerOptions>): Promise<PermissionsApp> {
  const app = await createService({
    service: 'permissions',
    config,
    migrationsDir: path.join(root, 'prisma/migrations'),
    PrismaClient,
    fastify,
  });
  const prisma = app.db.prisma as unknown as PrismaClient;
  const doc = await loadDocument<OpenApiDocument>('permissions');
  const accounts = new Accounts(prisma, { sessionTtlMs: config.DOCKYARD_SESSION_TTL_HOURS * 3_600_000 });
  const groups = new Groups(prisma);

  const event = (name: string, payload: Record<string, unknown>) =>
    app.events.publish(`events.permissions.${name}`, { id: randomUUID(), occurredAt: new Date().toISOString(), ...payload }, `${name}:${JSON.stringify(payload)}:${Date.now()}`);

  await app.register(accountRoutes, {
    doc,
    accounts,
    onRegistered: (login) => event('user.registered', { actor: login, login }),
    onConfirmed: (login) => event('user.confirmed', { actor: login, login }),
  });
  await app.register(authRoutes, {
    doc,
    accounts,
    groups,
    onTokenRevoked: (tokenHash) => event('token.revoked', { actor: null, tokenHash }),
  });

  serveRequests<IdentityResolveRequest, unknown>(app.nats, app.subjects.of('identity.resolve'), (req) => accounts.resolve(req.credential), app.log);

  const newAdminToken = await bootstrapAdmin(accounts, config.DOCKYARD_ADMIN_TOKEN);
  if (config.DOCKYARD_SEED_TEST_USERS) await seedTestIdentities(accounts);
  return { app, newAdminToken };
}
