import type { ServiceName } from '@dockyard/contracts';

/**
 * Which service answers which public path prefix (DESIGN.md's table). A prefix matches itself and
 * everything below it: `/apps` matches `/apps` and `/apps/x/y`, not `/appsx`.
 */
export const ROUTES: Record<ServiceName, string[]> = {
  permissions: ['/permissions', '/register', '/login', '/logout', '/auth'],
  registry: ['/apps', '/submit', '/namespaces', '/repositories', '/meta-files'],
  build: ['/builds', '/image'],
  execution: ['/pipeline', '/execution'],
  'source-cache': ['/api/v1'],
  process: ['/api/recording', '/api/replay', '/api/sbom', '/api/process', '/api/log', '/api/image'],
};
