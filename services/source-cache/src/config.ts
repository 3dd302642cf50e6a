import { loadServiceConfig } from '@dockyard/kit';
import { SERVICE_PORTS } from '@dockyard/contracts';

/** The source-cache service's configuration. */
export const loadSourceCacheConfig = (env: NodeJS.ProcessEnv = process.env) => loadServiceConfig(SERVICE_PORTS['source-cache'], {}, env);
export type SourceCacheConfig = ReturnType<typeof loadSourceCacheConfig>;
