import { envBool, loadServiceConfig, z } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

const extra = {
  DOCKYARD_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  DOCKYARD_SEED_TEST_USERS: envBool.default(false),
  DOCKYARD_SESSION_TTL_HOURS: z.coerce.number().positive().default(168),
};

/** The permissions service's configuration. */
export const loadPermissionsConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.permissions, extra, env);
export type PermissionsConfig = ReturnType<typeof loadPermissionsConfig>;
