import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import replyFrom from '@fastify/reply-from';
import { IDENTITY_HEADER } from '@dockyard/kit';
import type { IncomingHttpHeaders } from 'node:http';

interface ProxyOptions {
  service: string;
  upstreams: string[];
  prefixes: string[];
  /** The internal identity token to forward for this request. */
  identityToken: (request: FastifyRequest) => string;
}

const METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'] as const;

// Hop-by-hop or gateway-only headers never forwarded upstream. `expect` is stripped because the
// proxy would answer `Expect: 100-continue` (curl sends it for large bodies) with a 500.
const STRIPPED = ['expect', IDENTITY_HEADER, 'authorization'];

/**
 * Forwards every method under the given prefixes to one service (round-robin when it has several
 * upstreams), streaming bodies both ways: no body is parsed or buffered here.
 */
export const serviceProxy: FastifyPluginAsync<ProxyOptions> = async (app: FastifyInstance, opts) => {
  await app.register(replyFrom, {
    base: opts.upstreams.length === 1 ? opts.upstreams[0] : opts.upstreams,
    disableRequestLogging: true,
    undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 },
    // A request is retried only when it has no body and the upstream was unreachable.
    retryMethods: ['GET', 'HEAD', 'OPTIONS'],
  });
  // Pass bodies through untouched as streams; the service validates and limits them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const forward = (request: FastifyRequest, reply: FastifyReply, url: string) =>
    reply.from(url, {
      rewriteRequestHeaders: (_req, headers: IncomingHttpHeaders) => {
        const out: IncomingHttpHeaders = { ...headers };
        for (const h of STRIPPED) delete out[h];
        out[IDENTITY_HEADER] = opts.identityToken(request);
        out['x-request-id'] = request.id;
        return out;
      },
    });
  const handler = (request: FastifyRequest, reply: FastifyReply) => forward(request, reply, request.url);
  // The service's liveness through the public port, on the same path every call takes.
  app.get(`/healthz/${opts.service}`, (request, reply) => forward(request, reply, '/healthz'));
  for (const prefix of opts.prefixes) {
    app.route({ method: [...METHODS], url: prefix, handler });
    app.route({ method: [...METHODS], url: `${prefix}/*`, handler });
  }
};
