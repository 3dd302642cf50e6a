import { runServer } from '@dockyard/kit';
import { loadProcessConfig } from './config.js';
import { buildProcessApp } from './app.js';

await runServer(async () => {
  const config = loadProcessConfig();
  return { app: await buildProcessApp(config), host: config.DOCKYARD_HOST, port: config.DOCKYARD_PORT };
});
