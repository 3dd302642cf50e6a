import { loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const int = (min: number) => z.coerce.number().int().min(min);

const extra = {
  /** host:port of the OCI registry images are pushed to. */
  DOCKYARD_REGISTRY: z.string().regex(/^[^/\s]+$/, 'must be host:port').default('127.0.0.1:5000'),
  /** Builds one worker process runs at a time. */
  DOCKYARD_BUILD_CONCURRENCY: int(1).default(2),
  /** Time limit of one build (clone + build + push), seconds. */
  DOCKYARD_BUILD_TIMEOUT_S: int(1).default(1800),
  /** JetStream ack wait of the build queue: a killed worker's build is redelivered after this. */
  DOCKYARD_BUILD_ACK_WAIT_MS: int(1000).default(30_000),
  /** Attempts of one build across workers that stopped mid-build before it ends FAILURE. */
  DOCKYARD_BUILD_MAX_ATTEMPTS: int(1).default(2),
  /** Largest build context (bytes, uncompressed). */
  DOCKYARD_BUILD_CONTEXT_MAX_BYTES: int(1).default(512 * 1024 * 1024),
  /** Most files (and directories) in a build context. */
  DOCKYARD_BUILD_CONTEXT_MAX_FILES: int(1).default(20_000),
  /** Platforms this worker builds, comma-separated (default: the Docker engine's own). */
  DOCKYARD_BUILD_PLATFORMS: z.string().regex(/^([a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?)(,[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?)*$/, 'must be os/arch[,os/arch...]').optional(),
};

/** The build service's configuration. */
export const loadBuildConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.build, extra, env);
export type BuildConfig = ReturnType<typeof loadBuildConfig>;
