/**
 * Starts the six services in this process, each on a free port with its own PostgreSQL schema and
 * the run's NATS prefix, and returns the environment a gateway needs to reach them.
 */
import type { FastifyInstance } from 'fastify';
import { SERVICE_NAMES, type ServiceName } from '@dockyard/contracts';
import type { TestEnv } from '@dockyard/kit/testing';
import { buildPermissionsApp } from '../../services/permissions/src/app.js';
import { loadPermissionsConfig } from '../../services/permissions/src/config.js';
import { buildRegistryApp } from '../../services/registry/src/app.js';
import { loadRegistryConfig } from '../../services/registry/src/config.js';
import { buildBuildApp } from '../../services/build/src/app.js';
import { loadBuildConfig } from '../../services/build/src/config.js';
import { buildExecutionApp } from '../../services/execution/src/app.js';
import { loadExecutionConfig } from '../../services/execution/src/config.js';
import { buildSourceCacheApp } from '../../services/source-cache/src/app.js';
import { loadSourceCacheConfig } from '../../services/source-cache/src/config.js';
import { buildProcessApp } from '../../services/process/src/app.js';
import { loadProcessConfig } from '../../services/process/src/config.js';
import { upstreamVariable } from '../src/config.js';

const builders: Record<ServiceName, (env: NodeJS.ProcessEnv) => Promise<FastifyInstance>> = {
  permissions: async (env) => (await buildPermissionsApp(loadPermissionsConfig(env))).app,
  registry: (env) => buildRegistryApp(loadRegistryConfig(env)),
  build: (env) => buildBuildApp(loadBuildConfig(env)),
  execution: (env) => buildExecutionApp(loadExecutionConfig(env)),
  'source-cache': (env) => buildSourceCacheApp(loadSourceCacheConfig(env)),
  process: (env) => buildProcessApp(loadProcessConfig(env)),
};

export interface RunningServices {
  apps: Record<ServiceName, FastifyInstance>;
  /** DOCKYARD_<SERVICE>_URL variables for a gateway. */
  upstreamEnv: Record<string, string>;
  close(): Promise<void>;
}

export async function startServices(env: TestEnv, overrides: Partial<Record<ServiceName, string>> = {}): Promise<RunningServices> {
  const apps = {} as Record<ServiceName, FastifyInstance>;
  const upstreamEnv: Record<string, string> = {};
  await Promise.all(
    SERVICE_NAMES.map(async (name) => {
      if (overrides[name]) {
        upstreamEnv[upstreamVariable(name)] = overrides[name]!;
        return;
      }
      const app = await builders[name](env.serviceEnv(name, name === 'permissions' ? { DOCKYARD_SEED_TEST_USERS: '1' } : {}));
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address() as { port: number };
      apps[name] = app;
      upstreamEnv[upstreamVariable(name)] = `http://127.0.0.1:${address.port}`;
    }),
  );
  return {
    apps,
    upstreamEnv,
    close: async () => {
      await Promise.all(Object.values(apps).map((a) => a.close()));
    },
  };
}
