import type { FastifyInstance } from 'fastify';
import { identitySigner, type Identity } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { buildSourceCacheApp, dropStreams } from '../src/app.js';
import { loadSourceCacheConfig } from '../src/config.js';
import { removeTempDirs, type Upstream } from './fixtures.js';

export const alice: Identity = { id: 'u-alice', login: 'alice', admin: false, approved: true, groups: [], roles: [] };
export const bob: Identity = { id: 'u-bob', login: 'bob', admin: false, approved: true, groups: [], roles: [] };
export const worker: Identity = { id: 'u-worker', login: 'cachito-worker', admin: false, approved: true, groups: [], roles: ['worker'] };
export const osbs: Identity = { id: 'u-osbs', login: 'osbs', admin: false, approved: true, groups: [], roles: ['impersonate'] };
export const anonymous: Identity = { id: null, login: null, admin: false, approved: false, groups: [], roles: [] };

export interface Harness {
  env: TestEnv;
  app: FastifyInstance;
  headers(who: Identity): Record<string, string>;
  /** Polls a request until it leaves in_progress (no timing assertion: only an upper bound). */
  settle(id: number, who?: Identity): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

/** A source-cache app on the real PostgreSQL and NATS, its upstreams pointed at a local server. */
export async function startHarness(upstream: Upstream | null, extra: Record<string, string> = {}, shared?: TestEnv): Promise<Harness> {
  const env = shared ?? testEnv();
  const config = loadSourceCacheConfig(
    env.serviceEnv('source-cache', {
      DOCKYARD_GIT_ALLOW: 'file:',
      DOCKYARD_CACHITO_PKG_MANAGERS: 'gomod,npm,pip',
      DOCKYARD_PUBLIC_URL: 'https://dockyard.test',
      ...(upstream ? { DOCKYARD_NPM_REGISTRY: `${upstream.base}/npm`, DOCKYARD_PYPI_INDEX: `${upstream.base}/pypi/simple`, DOCKYARD_GOPROXY: `${upstream.base}/goproxy` } : {}),
      ...extra,
    }),
  );
  const app = await buildSourceCacheApp(config, { resolve: async () => ['93.184.216.34'] });
  await app.ready();
  const sign = identitySigner(env.env.DOCKYARD_INTERNAL_SECRET);
  const headers = (who: Identity) => ({ 'x-dockyard-identity': sign(who) });
  const settle = async (id: number, who: Identity = alice) => {
    for (let i = 0; i < 600; i++) {
      const res = await app.inject({ method: 'GET', url: `/api/v1/requests/${id}`, headers: headers(who) });
      const body = res.json();
      if (body.state !== 'in_progress') return body;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`request ${id} did not finish`);
  };
  return {
    env,
    app,
    headers,
    settle,
    async close() {
      await dropStreams(app);
      await app.close();
      if (!shared) await env.cleanup();
      removeTempDirs();
    },
  };
}

/** Errors of a document against the official CycloneDX 1.6 JSON schema (strict), null when valid. */
export async function cycloneDxErrors(doc: unknown): Promise<unknown> {
  const CDX = await import('@cyclonedx/cyclonedx-library');
  return new CDX.Validation.JsonStrictValidator(CDX.Spec.Version.v1dot6).validate(JSON.stringify(doc));
}
