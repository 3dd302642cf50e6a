import { runServer } from '@dockyard/kit';
import { loadRegistryConfig } from './config.js';
import { buildRegistryApp } from './app.js';

await runServer(async () => {
  const config = loadRegistryConfig();
  return { app: await buildRegistryApp(config), host: config.DOCKYARD_HOST, port: config.DOCKYARD_PORT };
});
