import { existsSync } from 'node:fs';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import fastifyStatic from '@fastify/static';

/** Where `make generate` (vite build in console/) puts the bundle; DOCKYARD_CONSOLE_DIR overrides. */
export const CONSOLE_DIR = process.env.DOCKYARD_CONSOLE_DIR || path.resolve(import.meta.dirname, '../../console/dist');

/**
 * The web console (issue 8): console/dist served as static files at `/` (index.html) and
 * `/assets/*` (content-hashed, cached for a year). Only the files found at start-up get a route
 * (no wildcard), so nothing can shadow an API path; the console routes inside the page with `/#/...`.
 * Without a bundle, `/` says how to build one.
 */
export const consolePlugin: FastifyPluginAsync<{ root?: string }> = async (app, opts) => {
  const root = opts.root ?? CONSOLE_DIR;
  // Static files need no identity and are not rate limited.
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config as object), public: true } as never;
  });
  if (!existsSync(path.join(root, 'index.html'))) {
    app.get('/', async (_request, reply) =>
      reply
        .code(503)
        .type('text/plain; charset=utf-8')
        .header('cache-control', 'no-cache')
        .send(`The Dockyard console is not built (no ${path.join(root, 'index.html')}). Run \`make generate\` (or \`pnpm --filter @dockyard/console run generate\`) and restart the gateway. The APIs work without it; see /docs.\n`),
    );
    return;
  }
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false,
    decorateReply: false,
    cacheControl: false,
    setHeaders: (res, file) => {
      const immutable = path.relative(root, file).startsWith(`assets${path.sep}`);
      res.header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
};
