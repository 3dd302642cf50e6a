import { loadServiceConfig } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

/** The execution service's configuration. */
export const loadExecutionConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS.execution, {}, env);
export type ExecutionConfig = ReturnType<typeof loadExecutionConfig>;
