import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Pool, errors, type Dispatcher } from 'undici';
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

/** Methods a client may repeat without changing the outcome (RFC 9110 9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

const codeOf = (err: unknown): string | undefined => {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.cause?.code ?? e?.code;
};

/**
 * Whether a failed attempt provably never reached the service, so the next replica may take it:
 * the connection was refused (nothing was sent), or it was reset before any byte of the body left
 * and the request is idempotent or has a body the service never saw (a service does not act on a
 * request whose body it has not received).
 */
export function neverReceived(err: unknown, method: string, body: Readable | null): boolean {
  const code = codeOf(err);
  if (code === 'ECONNREFUSED') return !body || !body.readableDidRead;
  const reset = code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED';
  if (!reset) return false;
  return body ? !body.readableDidRead : IDEMPOTENT.has(method);
}

/**
 * One attempt's view of the client's body: reads the client stream only once the upstream pulls
 * (undici does after connecting); destroying it (undici does when the attempt ends) only detaches
 * it, leaving the client stream whole if nothing was read yet, so the next replica can still be
 * sent the body, and whatever is left of it to {@link discardRest}.
 */
class AttemptBody extends Readable {
  private started = false;
  private readonly onData = (chunk: Buffer) => {
    if (!this.push(chunk)) this.source.pause();
  };
  private readonly onEnd = () => this.push(null);
  private readonly onError = (err: Error) => this.destroy(err);
  constructor(private readonly source: Readable) {
    super();
  }
  override _read(): void {
    if (!this.started) {
      this.started = true;
      this.source.on('data', this.onData).once('end', this.onEnd).once('error', this.onError);
    }
    this.source.resume();
  }
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.source.off('data', this.onData).off('end', this.onEnd).off('error', this.onError);
    this.source.pause();
    callback(err);
  }
}

/** Most of a client's body read and dropped after the service answered without it; past it the connection ends. */
const DISCARD_MAX_BYTES = 8 * 1024 * 1024;
const DISCARD_MAX_MS = 10_000;

/**
 * The client's body the service did not read (it answered first, e.g. a 401 or 404 before an
 * upload) is read and dropped, so the next request on the client's keep-alive connection is parsed:
 * left unread it stalls that connection (Node's server drains a body only if nobody started
 * reading it). A rest larger than {@link DISCARD_MAX_BYTES} or slower than {@link DISCARD_MAX_MS}
 * ends the connection instead.
 */
function discardRest(source: Readable): void {
  if (source.readableEnded || source.destroyed) return;
  let left = DISCARD_MAX_BYTES;
  const timer = setTimeout(() => source.destroy(), DISCARD_MAX_MS).unref();
  source.once('close', () => clearTimeout(timer));
  source.on('data', (chunk: Buffer) => {
    left -= chunk.length;
    if (left < 0) source.destroy();
  });
  source.resume();
}

/**
 * Forwards requests to one service over keep-alive undici pools, one per replica, taken in turn
 * (round robin). A request a replica provably never received (connection refused, or reset before
 * any of it was sent: {@link neverReceived}) goes on to the next replica, so a dead or restarting
 * replica costs no failed request while another is up. Bodies stream both ways and are never
 * buffered. The answer is written straight to the socket (`reply.hijack()`): piping a stream
 * through `reply.send` costs more than the proxying itself. `onResponse` hooks (metrics, access log)
 * still run.
 */
export function createForwarder(service: string, upstreams: string[]): Forwarder {
  const options = { connections: 256, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 300_000, bodyTimeout: 0 };
  const pools: Dispatcher[] = upstreams.map((u) => new Pool(u, options));
  let turn = 0;

  return {
    async forward(request, reply, path, identityToken) {
      const headers: IncomingHttpHeaders = {};
      for (const name in request.headers) if (!REQUEST_DROP.has(name)) headers[name] = request.headers[name];
      headers[IDENTITY_HEADER] = identityToken;
      headers['x-request-id'] = request.id;
      const hasBody = !METHODS_WITHOUT_BODY.has(request.method) || request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined;
      const source = hasBody ? ((request.body as Readable | undefined) ?? request.raw) : null;
      const first = turn;
      turn = (turn + 1) % pools.length;
      // The attempt's view of the body, detached once the answer is in.
      let body = null as AttemptBody | null;
      try {
        await send();
      } finally {
        if (source) {
          body?.destroy();
          discardRest(source);
        }
      }

      async function send(): Promise<void> {
        for (let attempt = 0; ; attempt++) {
          const pool = pools[(first + attempt) % pools.length];
          body = source && new AttemptBody(source);
          try {
            // stream() hands the answer straight to the client socket: no intermediate Readable, and
            // when the client goes away the upstream request is aborted.
            await pool.stream({ path, method: request.method as Dispatcher.HttpMethod, headers: headers as Record<string, string>, body }, ({ statusCode, headers: upstreamHeaders }) => {
              const out = { ...reply.getHeaders(), 'x-request-id': request.id } as OutgoingHttpHeaders;
              for (const name in upstreamHeaders) if (!RESPONSE_DROP.has(name)) out[name] = upstreamHeaders[name];
              reply.hijack();
              reply.raw.writeHead(statusCode, out);
              return reply.raw;
            });
            return;
          } catch (err) {
            if (reply.raw.headersSent) {
              if (!reply.raw.destroyed) request.log.warn({ err, service }, 'streaming the answer failed');
              return;
            }
            if (attempt + 1 < pools.length && !source?.destroyed && neverReceived(err, request.method, body)) {
              request.log.warn({ err, service, upstream: upstreams[(first + attempt) % pools.length] }, 'upstream did not take the request; trying the next replica');
              continue;
            }
            request.log.warn({ err, service }, 'upstream request failed');
            if (err instanceof errors.HeadersTimeoutError) throw new HttpError(504, `Service ${service} did not answer in time`);
            throw new HttpError(502, `Service ${service} is unavailable`);
          }
        }
      }
    },
    close: async () => void (await Promise.all(pools.map((p) => p.close()))),
  };
}
