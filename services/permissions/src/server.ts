import { runServer } from '@dockyard/kit';
import { loadPermissionsConfig } from './config.js';
import { buildPermissionsApp } from './app.js';

await runServer(async () => {
  const config = loadPermissionsConfig();
  const { app, newAdminToken } = await buildPermissionsApp(config);
  if (newAdminToken) process.stdout.write(`\nDockyard admin token (shown once, keep it): ${newAdminToken}\n\n`);
  return { app, host: config.DOCKYARD_HOST, port: config.DOCKYARD_PORT };
});
