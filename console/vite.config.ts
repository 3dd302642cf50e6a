import { defineConfig } from 'vite';

// A static bundle the gateway serves at `/` (hash routing: no path of the APIs is shadowed).
export default defineConfig({
  base: '/',
  build: { outDir: 'dist', assetsDir: 'assets', target: 'es2022', emptyOutDir: true, reportCompressedSize: false },
  server: {
    // `pnpm --filter @dockyard/console dev`: the APIs come from a running gateway.
    proxy: Object.fromEntries(
      ['/apps', '/submit', '/namespaces', '/repositories', '/meta-files', '/permissions', '/register', '/login', '/logout', '/auth', '/builds', '/image', '/pipeline', '/execution', '/api', '/events', '/readyz'].map((p) => [
        p,
        process.env.DOCKYARD_GATEWAY ?? 'http://127.0.0.1:8080',
      ]),
    ),
  },
});
