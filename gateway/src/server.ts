import { runServer } from '@dockyard/kit';
import { loadGatewayConfig } from './config.js';
import { buildGateway } from './app.js';

await runServer(async () => {
  const config = loadGatewayConfig();
  const { app } = await buildGateway(config);
  return { app, host: config.DOCKYARD_HOST, port: config.DOCKYARD_PORT };
});
