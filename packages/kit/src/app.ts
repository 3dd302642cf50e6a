import { randomUUID } from 'node:crypto';
import Fastify, { LogController, errorCodes, type FastifyInstance, type FastifyServerOptions, type FastifyError } from 'fastify';
import formbody from '@fastify/formbody';
import pino from 'pino';
import { HttpError } from './errors.js';
import { formatValidationErrors } from './validation.js';
import { healthPlugin, type ReadinessCheck } from './health.js';
import { metricsPlugin } from './metrics.js';

export interface AppOptions {
  /**
   * Refuse a declared body over the route's limit before reading it (default). Off for an app that
   * streams bodies through unparsed (the gateway), where the route's limit is not the real one.
   */
  earlyBodyLimit?: boolean;
  /** Service name, used in logs and metrics. */
  service: string;
  logLevel?: string;
  /** Largest request body a JSON/form parser accepts (streams and multipart set their own). */
  bodyLimit?: number;
  /** Log each request's start and end (default true); the gateway logs one access line instead. */
  requestLogging?: boolean;
  /** Buffer log lines (flushed every 500 ms and on close) instead of one write per line: for access logs. */
  bufferLogs?: boolean;
  /** Extra Fastify options, e.g. a test logger. */
  fastify?: Partial<FastifyServerOptions>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Where this process's log lines go (for a hand-built line on a hot path: see the gateway's access log). */
    logStream: { write(line: string): boolean };
  }
  interface FastifyContextConfig {
    /** Skip the internal identity check (health, metrics). */
    public?: boolean;
  }
}

/**
 * Where log lines go: stdout, written asynchronously (a synchronous write per line costs a system
 * call on every request). Buffered destinations are flushed on a timer, like nginx's
 * `access_log ... buffer= flush=`, so a quiet process still shows its lines within half a second.
 */
function logDestination(buffered: boolean) {
  const destination = pino.destination({ dest: 1, sync: false, minLength: buffered ? 8 * 1024 : 0 });
  if (buffered) {
    setInterval(() => {
      // flush() throws while a write is already in flight; the next tick takes it.
      try {
        destination.flush();
      } catch {}
    }, 500).unref();
  }
  return destination;
}

/**
 * The Fastify instance every service and the gateway start from: request ids (taken from
 * `x-request-id` when a trusted hop set one), pino logging, the `{"error": "..."}` error body the
 * four original APIs use, a 404 in that shape, form bodies, /healthz, /readyz and /metrics.
 */
export function createApp(opts: AppOptions): FastifyInstance {
  const logs = logDestination(opts.bufferLogs ?? false);
  const app = Fastify({
    logger: { level: opts.logLevel ?? 'info', base: { service: opts.service }, stream: logs },
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    ajv: { customOptions: { strict: false, removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    schemaErrorFormatter: formatValidationErrors,
    // A long path parameter is the route's schema's to refuse (400 naming it) or a 404, not the
    // router's 414 in Fastify's own body shape: the URL is already bounded by Node's header limit.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 16 * 1024 },
    logController: new LogController({ disableRequestLogging: opts.requestLogging === false }),
    // Fastify's 10 s per plugin is too short when a busy host starts every service at once (PGlite,
    // migrations, the OpenAPI docs): a slow start is not a failed one. A start that truly hangs still ends.
    pluginTimeout: 120_000,
    ...opts.fastify,
  });

  // Every answer names its request and the service that produced it (useful behind the gateway).
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    if (!reply.hasHeader('x-dockyard-service')) reply.header('x-dockyard-service', opts.service);
    done(null, payload);
  });

  // A declared body over the route's limit is refused before anything reads it, and the connection
  // stays open (Node discards the rest of the body). Refused later by the body parser, Fastify closes
  // the connection mid-upload, and a proxy still sending (the gateway) sees a reset, not the 413.
  // Multipart uploads have their own per-file limits, checked while they stream.
  app.addHook('onRequest', (request, reply, done) => {
    const length = Number(request.headers['content-length']);
    const limit = request.routeOptions.bodyLimit;
    if (opts.earlyBodyLimit !== false && limit && length > limit && !request.headers['content-type']?.startsWith('multipart/')) {
      // The error the body parser would raise, so each route's error handler words it as before.
      done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
      return;
    }
    done();
  });

  app.setErrorHandler((err: FastifyError | HttpError, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      // An HttpError's message is written for the caller (e.g. 502 "Service build is unavailable").
      return reply.status(status).send({ error: err instanceof HttpError ? err.message : 'Internal server error' });
    }
    let message = err.message;
    if ((err as FastifyError).code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = 'Request body is too large';
    else if ((err as FastifyError).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = `Unsupported content type: ${request.headers['content-type'] ?? 'none'}`;
    return reply.status(status).send({ error: message });
  });

  app.setNotFoundHandler((_request, reply) => reply.status(404).send({ error: 'The requested resource was not found' }));

  app.decorate('readiness', new Map<string, ReadinessCheck>());
  app.decorate('logStream', logs);
  app.addHook('onClose', (_app, done) => {
    // Lines still buffered leave before the process does.
    try {
      logs.flushSync();
    } catch {}
    done();
  });
  void app.register(formbody, { bodyLimit: opts.bodyLimit ?? 1024 * 1024 });
  void app.register(healthPlugin);
  void app.register(metricsPlugin, { service: opts.service });
  return app;
}
