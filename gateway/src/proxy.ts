import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { createForwarder } from './forward.js';

interface ProxyOptions {
  service: string;
  upstreams: string[];
  prefixes: string[];
  /** The internal identity token to forward for this request. */
  identityToken: (request: FastifyRequest) => string;
}

const METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];

/**
 * Routes every method under a service's prefixes to it (round robin across its replicas, a request no replica received going on to the next),
 * streaming bodies both ways: no body is parsed or buffered here.
 */
export const serviceProxy: FastifyPluginAsync<ProxyOptions> = async (app, opts) => {
  const forwarder = createForwarder(opts.service, opts.upstreams);
  app.addHook('onClose', () => forwarder.close());
  // Pass bodies through untouched as streams; the service validates and limits them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const handler = (request: FastifyRequest, reply: FastifyReply) => forwarder.forward(request, reply, request.url, opts.identityToken(request));
  // The service's liveness through the public port, on the same path every call takes.
  app.get(`/healthz/${opts.service}`, (request, reply) => forwarder.forward(request, reply, '/healthz', opts.identityToken(request)));
  for (const prefix of opts.prefixes) {
    app.route({ method: METHODS, url: prefix, handler });
    app.route({ method: METHODS, url: `${prefix}/*`, handler });
  }
};
