import { loadServiceConfig } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

/** The registry service's configuration. */
export const loadRegistryConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.registry, {}, env);
export type RegistryConfig = ReturnType<typeof loadRegistryConfig>;
