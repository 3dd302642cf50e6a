import { loadServiceConfig } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

/** The process service's configuration. */
export const loadProcessConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.process, {}, env);
export type ProcessConfig = ReturnType<typeof loadProcessConfig>;
