import { loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const extra = {
  /** host:port of the OCI registry images are pushed to. */
  DOCKYARD_REGISTRY: z.string().regex(/^[^/\s]+$/, 'must be host:port').default('127.0.0.1:5000'),
};

/** The build service's configuration. */
export const loadBuildConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.build, extra, env);
export type BuildConfig = ReturnType<typeof loadBuildConfig>;
