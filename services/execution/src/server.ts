import { runServer } from '@dockyard/kit';
import { loadExecutionConfig } from './config.js';
import { buildExecutionApp } from './app.js';

await runServer(async () => {
  const config = loadExecutionConfig();
  return { app: await buildExecutionApp(config), host: config.DOCKYARD_HOST, port: config.DOCKYARD_PORT };
});
