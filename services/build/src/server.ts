import { runServer } from '@dockyard/kit';
import { loadBuildConfig } from './config.js';
import { buildBuildApp } from './app.js';

await runServer(async () => {
  const config = loadBuildConfig();
  return { app: await buildBuildApp(config), host: config.DOCKYARD_HOST, port: config.DOCKYARD_PORT };
});
