import { envBool, loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const extra = {
  /** A clone (with submodules) that takes longer is aborted and the submit refused. */
  DOCKYARD_GIT_TIMEOUT_S: z.coerce.number().positive().default(120),
  /** Largest source archive (gzipped tar of the checked-out tree) a submit may store. */
  DOCKYARD_REGISTRY_SOURCE_MAX_MB: z.coerce.number().positive().default(256),
  /**
   * Benchmarks only: store submitted apps without cloning (no commit, no archive, no ecr-meta
   * files). Never set in a deployment; the service logs a warning when it is on.
   */
  DOCKYARD_REGISTRY_SKIP_CLONE: envBool.default(false),
  /** How long a rendered app is served from memory (0: off); a change in any replica drops it at once. */
  DOCKYARD_REGISTRY_APP_CACHE_MS: z.coerce.number().int().min(0).default(5000),
  /** How long a permission decision is reused (any grant change drops them at once). */
  DOCKYARD_PERMISSION_CACHE_MS: z.coerce.number().int().min(0).default(5000),
};

/** The registry service's configuration. */
export const loadRegistryConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.registry, extra, env);
export type RegistryConfig = ReturnType<typeof loadRegistryConfig>;
