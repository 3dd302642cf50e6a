import fp from 'fastify-plugin';
import Docker from 'dockerode';

declare module 'fastify' {
  interface FastifyInstance {
    docker: Docker;
  }
}

/** A client for the Docker engine at DOCKER_HOST (default: the local socket). API version left to negotiation. */
export function dockerClient(): Docker {
  return new Docker();
}

/**
 * The Docker engine (and, when `registry` is given, the OCI registry images are pushed to) as
 * readiness checks of the service.
 */
export const dockerPlugin = fp<{ registry?: string }>(
  async (app, opts) => {
    const docker = dockerClient();
    app.decorate('docker', docker);
    app.readiness.set('docker', async () => void (await docker.ping()));
    if (opts.registry) {
      const url = `http://${opts.registry}/v2/`;
      app.readiness.set('registry', async () => {
        const res = await fetch(url, { signal: AbortSignal.timeout(2500) });
        // 401 means a registry that wants a token: it answers, so it is up.
        if (res.status !== 200 && res.status !== 401) throw new Error(`${url} answered ${res.status}`);
      });
    }
  },
  { name: 'dockyard-docker' },
);
