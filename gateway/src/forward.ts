import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { BalancedPool, Pool, errors, type Dispatcher } from 'undici';
import { HttpError, IDENTITY_HEADER } from '@dockyard/kit';

// Never forwarded upstream: hop-by-hop headers, the client's credential (the service gets the
// identity token instead), any client-sent identity token, and `Expect` (a proxied
// `Expect: 100-continue` would stall the upload; the gateway reads the body itself).
const REQUEST_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect', 'authorization', IDENTITY_HEADER]);
const RESPONSE_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const METHODS_WITHOUT_BODY = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

export interface Forwarder {
  /** Sends the request to the service at `path` and streams the answer back to the client. */
  forward(request: FastifyRequest, reply: FastifyReply, path: string, identityToken: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Forwards requests to one service over a keep-alive undici pool (a balanced pool across replicas).
 * Bodies stream both ways and are never buffered. The answer is written straight to the socket
 * (`reply.hijack()`): piping a stream through `reply.send` costs more than the proxying itself.
 * `onResponse` hooks (metrics, access log) still run.
 */
export function createForwarder(service: string, upstreams: string[]): Forwarder {
  const options = { connections: 256, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 300_000, bodyTimeout: 0 };
  const dispatcher: Dispatcher = upstreams.length > 1 ? new BalancedPool(upstreams, options) : new Pool(upstreams[0], options);

  return {
    async forward(request, reply, path, identityToken) {
      const headers: IncomingHttpHeaders = {};
      for (const name in request.headers) if (!REQUEST_DROP.has(name)) headers[name] = request.headers[name];
      headers[IDENTITY_HEADER] = identityToken;
      headers['x-request-id'] = request.id;
      const hasBody = !METHODS_WITHOUT_BODY.has(request.method) || request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined;
      const body = hasBody ? ((request.body as Readable | undefined) ?? request.raw) : null;
      try {
        // stream() hands the answer straight to the client socket: no intermediate Readable, and
        // when the client goes away the upstream request is aborted.
        await dispatcher.stream({ path, method: request.method as Dispatcher.HttpMethod, headers: headers as Record<string, string>, body }, ({ statusCode, headers: upstreamHeaders }) => {
          const out = { ...reply.getHeaders(), 'x-request-id': request.id } as OutgoingHttpHeaders;
          for (const name in upstreamHeaders) if (!RESPONSE_DROP.has(name)) out[name] = upstreamHeaders[name];
          reply.hijack();
          reply.raw.writeHead(statusCode, out);
          return reply.raw;
        });
      } catch (err) {
        if (reply.raw.headersSent) {
          if (!reply.raw.destroyed) request.log.warn({ err, service }, 'streaming the answer failed');
          return;
        }
        request.log.warn({ err, service }, 'upstream request failed');
        if (err instanceof errors.HeadersTimeoutError) throw new HttpError(504, `Service ${service} did not answer in time`);
        throw new HttpError(502, `Service ${service} is unavailable`);
      }
    },
    close: () => dispatcher.close(),
  };
}
