import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify';
import fastifyJwt from '@fastify/jwt';
import rateLimit from '@fastify/rate-limit';
import { request as httpRequest } from 'undici';
import { SERVICE_NAMES, type Credential, type IdentityResolveReply } from '@dockyard/contracts';
import {
  HttpError,
  Subjects,
  connectNats,
  createApp,
  identitySigner,
  json,
  request as natsRequest,
  unauthorized,
  type NatsConnection,
} from '@dockyard/kit';
import type { GatewayConfig } from './config.js';
import { parseCredential } from './credentials.js';
import { CredentialResolver, type Resolved } from './resolver.js';
import { ROUTES } from './routes-table.js';
import { serviceProxy } from './proxy.js';
import { docsPlugin } from './docs.js';
import { eventsPlugin } from './events.js';
import { consolePlugin } from './console.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Resolved;
  }
}

const INTERNAL_TOKEN_TTL_MS = 60_000;

export interface Gateway {
  app: FastifyInstance;
  resolver: CredentialResolver;
}

/**
 * The only public port: resolves every credential scheme once (cached), forwards a short-lived
 * internal identity token, routes public paths to services, limits rates, serves docs and health.
 */
export async function buildGateway(config: GatewayConfig, fastify?: Partial<FastifyServerOptions>): Promise<Gateway> {
  const app = createApp({
    service: 'gateway',
    logLevel: config.DOCKYARD_LOG_LEVEL,
    requestLogging: false,
    bufferLogs: config.DOCKYARD_ACCESS_LOG,
    // Bodies stream through to the services, which apply their own limits.
    earlyBodyLimit: false,
    fastify,
  });
  const subjects = new Subjects(config.DOCKYARD_NATS_PREFIX);
  // With the deployment's replicas: the gateway ensures the EVENTS stream too, and a stream is updated
  // to the replicas its ensurer asks for (one replica here once took EVENTS down with one NATS node).
  const nc: NatsConnection = await connectNats(config.DOCKYARD_NATS_URL, 'gateway', { replicas: config.DOCKYARD_NATS_REPLICAS });
  app.addHook('onClose', async () => {
    if (!nc.isClosed()) await nc.drain();
  });
  app.readiness.set('nats', async () => nc.flush());

  const resolver = new CredentialResolver({
    ttlMs: config.DOCKYARD_AUTH_CACHE_MS,
    tokenTtlMs: INTERNAL_TOKEN_TTL_MS,
    sign: identitySigner(config.DOCKYARD_INTERNAL_SECRET, INTERNAL_TOKEN_TTL_MS),
    lookup: (credential: Credential) =>
      natsRequest<{ credential: Credential }, IdentityResolveReply>(nc, subjects.of('identity.resolve'), { credential }, 5000).catch((err) => {
        throw Object.assign(new Error(`Identity service unavailable: ${(err as Error).message}`), { statusCode: 503 });
      }),
  });

  // A revoked token stops working at once on every gateway, not after the cache expires.
  const revoked = nc.subscribe(subjects.of('events.permissions.token.revoked'));
  void (async () => {
    for await (const msg of revoked) resolver.forgetToken(json.decode<{ tokenHash: string }>(msg.data).tokenHash);
  })();

  const jwtKey = config.DOCKYARD_JWT_PUBLIC_KEY ?? config.DOCKYARD_JWT_SECRET;
  if (jwtKey) await app.register(fastifyJwt, { secret: jwtKey, verify: { cache: true } });
  const verifyJwt = (token: string): string => {
    if (!jwtKey) throw unauthorized('JWT bearer tokens are not accepted here (no DOCKYARD_JWT_SECRET or DOCKYARD_JWT_PUBLIC_KEY)');
    let claims: { sub?: string; preferred_username?: string };
    try {
      claims = app.jwt.verify(token);
    } catch (err) {
      throw unauthorized(`Invalid JWT: ${(err as Error).message}`);
    }
    const subject = claims.preferred_username ?? claims.sub;
    if (!subject) throw unauthorized('Invalid JWT: no sub or preferred_username claim');
    return subject;
  };

  app.decorateRequest('caller', null as unknown as Resolved);
  // Callback style: a cached credential resolves without a promise, so a hit costs no microtask.
  app.addHook('onRequest', (request: FastifyRequest, _reply, done) => {
    let caller: Resolved | Promise<Resolved>;
    try {
      const parsed = parseCredential(request.headers.authorization, request.headers.cookie);
      if (parsed.kind === 'anonymous') caller = resolver.anonymousIdentity();
      else if (parsed.kind === 'jwt') caller = resolver.resolve({ scheme: 'jwt', subject: verifyJwt(parsed.token) });
      else caller = resolver.resolve(parsed.credential);
    } catch (err) {
      return done(err as Error);
    }
    if (caller instanceof Promise) {
      caller.then((resolved) => {
        request.caller = resolved;
        done();
      }, done);
    } else {
      request.caller = caller;
      done();
    }
  });

  if (config.DOCKYARD_RATE_LIMIT > 0) {
    await app.register(rateLimit, {
      max: config.DOCKYARD_RATE_LIMIT,
      timeWindow: 60_000,
      hook: 'preHandler',
      keyGenerator: (request) => request.caller?.identity.id ?? `ip:${request.ip}`,
      allowList: (request) => request.routeOptions.config?.public === true,
      errorResponseBuilder: (_req, ctx) => new HttpError(429, `Rate limit exceeded: at most ${ctx.max} requests per minute; retry in ${ctx.after}`),
    });
  }

  if (config.DOCKYARD_ACCESS_LOG && ['trace', 'debug', 'info'].includes(config.DOCKYARD_LOG_LEVEL)) {
    // One line per request in pino's shape, built by hand: pino's per-call serialization was
    // a sixth of the gateway's cost per request (bench/gateway, access log on vs off).
    app.addHook('onResponse', (request, reply, done) => {
      const user = request.caller?.identity.login;
      app.logStream.write(
        `{"level":30,"time":${Date.now()},"service":"gateway","reqId":${JSON.stringify(request.id)},"method":"${request.method}","url":${JSON.stringify(request.url)},"status":${reply.statusCode},"user":${user ? JSON.stringify(user) : 'null'},"ms":${Math.round(reply.elapsedTime)},"msg":"request"}\n`,
      );
      done();
    });
  }

  for (const service of SERVICE_NAMES) {
    await app.register(serviceProxy, {
      service,
      upstreams: config.upstreams[service],
      prefixes: ROUTES[service],
      identityToken: (request) => request.caller.token,
    });
  }
  await app.register(docsPlugin);
  await app.register(eventsPlugin, { nc, subjects, pingMs: config.DOCKYARD_EVENTS_PING_MS, maxBufferBytes: config.DOCKYARD_EVENTS_MAX_BUFFER_KB * 1024, stallMs: config.DOCKYARD_EVENTS_STALL_MS });
  await app.register(consolePlugin);

  // The gateway is ready when NATS answers and every service has at least one ready replica: the
  // forwarder takes requests a dead replica never received to the next one.
  for (const service of SERVICE_NAMES) {
    app.readiness.set(service, async () => {
      await Promise.any(config.upstreams[service].map((base) => replicaReady(base))).catch((err: AggregateError) => {
        throw new Error(err.errors.map((e: Error) => e.message).join('; '));
      });
    });
  }
  return { app, resolver };
}

/** Resolves when the replica at `base` answers its own `/readyz` with 200; the error names what fails. */
async function replicaReady(base: string): Promise<void> {
  const res = await httpRequest(new URL('/readyz', base), { headersTimeout: 2500, bodyTimeout: 2500 }).catch((err: Error) => {
    throw new Error(`${base} unreachable (${err.message})`);
  });
  const body = (await res.body.json().catch(() => ({}))) as { checks?: Record<string, { ok: boolean; error?: string }> };
  if (res.statusCode === 200) return;
  const failing = Object.entries(body.checks ?? {}).filter(([, c]) => !c.ok).map(([n, c]) => `${n}: ${c.error}`);
  throw new Error(`${base} not ready${failing.length ? ` (${failing.join('; ')})` : ` (HTTP ${res.statusCode})`}`);
}
