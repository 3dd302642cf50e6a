/**
 * A registry and a permissions service in this process, on the real PostgreSQL and NATS (one
 * schema each and one NATS prefix per test file), and helpers to call routes as someone.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { ANONYMOUS, IDENTITY_HEADER, identitySigner, type Identity } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import type { ResourceRef } from '@dockyard/contracts';
import { buildPermissionsApp } from '../../permissions/src/app.js';
import { loadPermissionsConfig } from '../../permissions/src/config.js';
import { Grants } from '../../permissions/src/domain/grants.js';
import type { PrismaClient as PermissionsPrisma } from '../../permissions/src/generated/prisma/client.js';
import { buildRegistryApp } from '../src/app.js';
import { loadRegistryConfig } from '../src/config.js';
import type { PrismaClient } from '../src/generated/prisma/client.js';

export const user = (login: string, groups: string[] = []): Identity => ({ id: `u-${login}`, login, admin: false, approved: true, groups, roles: [] });
export const admin: Identity = { id: 'u-admin', login: 'admin', admin: true, approved: true, groups: [], roles: [] };
export const anonymous: Identity = ANONYMOUS;
export const ns = (name: string): ResourceRef => ({ type: 'namespace', name });
export const repo = (name: string): ResourceRef => ({ type: 'repository', name });

export interface Harness {
  env: TestEnv;
  registry: FastifyInstance;
  permissions: FastifyInstance;
  /** The permissions service's grant store, for setting up grants (the HTTP endpoints live elsewhere). */
  grants: Grants;
  prisma: PrismaClient;
  events: { subject: string; payload: Record<string, unknown> }[];
  call(
    as: Identity,
    method: string,
    url: string,
    body?: string | object,
    headers?: Record<string, string>,
  ): Promise<LightMyRequestResponse & { body: string }>;
  close(): Promise<void>;
}

export async function startHarness(extra: Record<string, string> = {}): Promise<Harness> {
  const env = testEnv();
  const { app: permissions } = await buildPermissionsApp(loadPermissionsConfig(env.serviceEnv('permissions')));
  await permissions.ready();
  // Decisions are not cached across the test's direct grant changes (made without the event).
  const config = loadRegistryConfig(env.serviceEnv('registry', { DOCKYARD_PERMISSION_CACHE_MS: '0', ...extra }));
  const registry = await buildRegistryApp(config);
  await registry.ready();
  const sign = identitySigner(config.DOCKYARD_INTERNAL_SECRET);
  const events: Harness['events'] = [];
  const sub = registry.nats.subscribe(registry.subjects.of('events.registry.>'));
  void (async () => {
    for await (const m of sub) events.push({ subject: m.subject.slice(env.env.DOCKYARD_NATS_PREFIX.length), payload: m.json() });
  })();
  return {
    env,
    registry,
    permissions,
    grants: new Grants(permissions.db.prisma as unknown as PermissionsPrisma),
    prisma: registry.db.prisma as unknown as PrismaClient,
    events,
    async call(as, method, url, body, headers = {}) {
      const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const res = await registry.inject({
        method: method as 'GET',
        url,
        headers: {
          [IDENTITY_HEADER]: sign(as),
          ...(payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type') ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        payload,
      });
      return res as LightMyRequestResponse & { body: string };
    },
    async close() {
      sub.unsubscribe();
      await registry.close();
      await permissions.close();
      await env.cleanup();
    },
  };
}

/** A minimal valid app document. */
export function appDoc(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    description: 'very important app',
    source: { url: 'https://github.com/waggle-sensor/edge-plugins.git', branch: 'master', architectures: ['linux/amd64'] },
    ...extra,
  };
}

/** Polls until `check` holds (an event's delivery); fails after 10 s. */
export async function waitFor(check: () => boolean | Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 25))) {
    if (await check()) return;
  }
  throw new Error('condition not reached within 10 s');
}
