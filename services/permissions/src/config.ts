import { ConfigError, envBool, loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const extra = {
  DOCKYARD_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  DOCKYARD_SEED_TEST_USERS: envBool.default(false),
  DOCKYARD_SESSION_TTL_HOURS: z.coerce.number().positive().default(168),
  /** The OCI registry's `auth.token.service`: the only `service` the token endpoint signs for (JWT `aud`). */
  DOCKYARD_REGISTRY_TOKEN_SERVICE: z.string().min(1).default('dockyard-registry'),
  /** The registry's `auth.token.issuer` (JWT `iss`). */
  DOCKYARD_REGISTRY_TOKEN_ISSUER: z.string().min(1).default('dockyard'),
  /** Lifetime of a registry token in seconds (Docker asks again when it runs out). */
  DOCKYARD_REGISTRY_TOKEN_TTL: z.coerce.number().int().min(60).max(86_400).default(300),
  /**
   * PEM files of the RSA key that signs registry tokens and of its certificate (the registry's
   * `rootcertbundle`). Both or neither: without them a key pair is created on first start in
   * DOCKYARD_DATA_DIR/permissions/registry-token/.
   */
  DOCKYARD_REGISTRY_TOKEN_KEY: z.string().min(1).optional(),
  DOCKYARD_REGISTRY_TOKEN_CERT: z.string().min(1).optional(),
};

/** The permissions service's configuration. */
export function loadPermissionsConfig(env: NodeJS.ProcessEnv = process.env) {
  const config = loadServiceConfig(SERVICE_PORTS.permissions, extra, env);
  if (!config.DOCKYARD_REGISTRY_TOKEN_KEY !== !config.DOCKYARD_REGISTRY_TOKEN_CERT) {
    throw new ConfigError(['DOCKYARD_REGISTRY_TOKEN_KEY and DOCKYARD_REGISTRY_TOKEN_CERT go together: give both PEM files or neither']);
  }
  return config;
}
export type PermissionsConfig = ReturnType<typeof loadPermissionsConfig>;
