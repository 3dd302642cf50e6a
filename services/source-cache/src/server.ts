import { runServer } from '@dockyard/kit';
import { loadSourceCacheConfig } from './config.js';
import { buildSourceCacheApp } from './app.js';

await runServer(async () => {
  const config = loadSourceCacheConfig();
  return { app: await buildSourceCacheApp(config), host: config.DOCKYARD_HOST, port: config.DOCKYARD_PORT };
});
