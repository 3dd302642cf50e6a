import { loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const list = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );

const extra = {
  /** Package managers this deployment processes (a request naming another one is a 400). */
  DOCKYARD_CACHITO_PKG_MANAGERS: list('gomod,npm,pip,yarn,git-submodule'),
  /** What `pkg_managers` means when a request omits it (Cachito's default is gomod). */
  DOCKYARD_CACHITO_DEFAULT_PKG_MANAGERS: list('gomod'),
  /** Upstreams (all configurable; tests point them at local servers). */
  DOCKYARD_NPM_REGISTRY: z.string().url().default('https://registry.npmjs.org'),
  DOCKYARD_PYPI_INDEX: z.string().url().default('https://pypi.org/simple'),
  DOCKYARD_GOPROXY: z.string().url().default('https://proxy.golang.org'),
  /** The public base URL the gateway answers on: used in URLs the API returns and in configuration files. */
  DOCKYARD_PUBLIC_URL: z.string().url().default('http://127.0.0.1:8080'),
  /** Requests older than this become stale (bundle and logs deleted, record kept). */
  DOCKYARD_CACHITO_STALE_AFTER_HOURS: z.coerce.number().positive().default(24 * 30),
  DOCKYARD_CACHITO_CLONE_TIMEOUT_S: z.coerce.number().int().positive().default(300),
  /** Largest repository (checked-out tree plus .git) a request may clone. */
  DOCKYARD_CACHITO_MAX_REPO_MB: z.coerce.number().positive().default(512),
  /** Largest single artifact fetched from an upstream. */
  DOCKYARD_CACHITO_MAX_ARTIFACT_MB: z.coerce.number().positive().default(256),
  /** How long a worker may go silent before its work item is redelivered. */
  DOCKYARD_CACHITO_ACK_WAIT_MS: z.coerce.number().int().positive().default(60_000),
  DOCKYARD_CACHITO_WORKER_CONCURRENCY: z.coerce.number().int().positive().default(2),
  /** Deliveries of one request's work item (each after a worker stopped mid-way) before it ends failed. */
  DOCKYARD_CACHITO_MAX_ATTEMPTS: z.coerce.number().int().positive().default(3),
};

/** The source-cache service's configuration. */
export const loadSourceCacheConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS['source-cache'], extra, env);
export type SourceCacheConfig = ReturnType<typeof loadSourceCacheConfig>;
