import { createSigner } from 'fast-jwt';
import type { FastifyInstance } from 'fastify';
import { ROUTES } from '../src/routes-table.js';
import { buildGateway } from '../src/app.js';
import { loadGatewayConfig } from '../src/config.js';
import { MSG_UNPARSABLE, MSG_UNSUPPORTED } from '../src/credentials.js';
import { ANONYMOUS, IDENTITY_HEADER, identitySigner } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { startServices, type RunningServices } from './stack.js';

const JWT_SECRET = 'j'.repeat(40);

describe('gateway (real services, PostgreSQL and NATS)', () => {
  let env: TestEnv;
  let services: RunningServices;
  let gateway: FastifyInstance;
  const get = (url: string, headers: Record<string, string> = {}) => gateway.inject({ url, headers });
  const whoami = async (headers: Record<string, string>) => {
    const res = await get('/auth/whoami', headers);
    return { status: res.statusCode, body: res.json() };
  };

  beforeAll(async () => {
    env = testEnv();
    services = await startServices(env);
    const config = loadGatewayConfig({ ...env.env, ...services.upstreamEnv, DOCKYARD_PORT: '0', DOCKYARD_AUTH_CACHE_MS: '2000', DOCKYARD_JWT_SECRET: JWT_SECRET });
    gateway = (await buildGateway(config)).app;
    await gateway.ready();
  });
  afterAll(async () => {
    await gateway?.close();
    await services?.close();
    await env?.cleanup();
  });

  it('reports every service ready at /readyz', async () => {
    const res = await get('/readyz');
    expect(res.statusCode).toBe(200);
    expect(Object.keys(res.json().checks).sort()).toEqual(['build', 'execution', 'nats', 'permissions', 'process', 'registry', 'source-cache']);
    expect((await get('/healthz')).json()).toEqual({ status: 'ok' });
  });

  it.each(Object.entries(ROUTES).flatMap(([service, prefixes]) => prefixes.map((p) => [p, service])))('routes %s to %s', async (prefix, service) => {
    for (const url of [prefix, `${prefix}/some/thing?x=1`]) {
      const res = await get(url, { authorization: 'sage testuser_token' });
      expect(res.headers['x-dockyard-service']).toBe(service);
    }
  });

  it.each(Object.keys(ROUTES))('forwards /healthz/%s to that service', async (service) => {
    const res = await get(`/healthz/${service}`, { authorization: 'sage testuser_token' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
    expect(res.headers['x-dockyard-service']).toBe(service);
  });

  it('answers unrouted paths itself with a 404 in the {"error"} shape', async () => {
    const res = await get('/appsx');
    expect(res.statusCode).toBe(404);
    expect(res.headers['x-dockyard-service']).toBe('gateway');
    expect(res.json()).toEqual({ error: 'The requested resource was not found' });
  });

  it.each([['sage'], ['Sage'], ['SAGE'], ['static'], ['Bearer'], ['bearer']])('accepts the %s token scheme', async (scheme) => {
    expect(await whoami({ authorization: `${scheme} testuser_token` })).toMatchObject({ status: 200, body: { login: 'testuser' } });
  });

  it("refuses bad Authorization headers with ECR's words", async () => {
    expect(await whoami({ authorization: 'sage' })).toEqual({ status: 401, body: { error: MSG_UNPARSABLE } });
    expect(await whoami({ authorization: 'sage a b' })).toEqual({ status: 401, body: { error: MSG_UNPARSABLE } });
    expect(await whoami({ authorization: 'Digest abc' })).toEqual({ status: 401, body: { error: MSG_UNSUPPORTED } });
    expect(await whoami({ authorization: 'sage no_such_token' })).toEqual({ status: 401, body: { error: 'Token not found' } });
    expect(MSG_UNPARSABLE).toBe('Authorization failed (could not parse Authorization header)');
    expect(MSG_UNSUPPORTED).toBe('Authorization failed (Authorization bearer not supported)');
  });

  it('lets anonymous callers through as anonymous, and never trusts a client-sent identity', async () => {
    expect(await whoami({})).toEqual({ status: 401, body: { error: 'Authentication required' } });
    const forged = identitySigner('f'.repeat(40))({ ...ANONYMOUS, id: 'x', login: 'admin', admin: true });
    expect(await whoami({ [IDENTITY_HEADER]: forged })).toEqual({ status: 401, body: { error: 'Authentication required' } });
  });

  it('accepts HTTP Basic and the session cookie from POST /login', async () => {
    const admin = { authorization: 'sage admin_token' };
    const created = await gateway.inject({ method: 'POST', url: '/auth/users', headers: admin, payload: { login: 'basicuser', password: 'pw-basic', approved: true } });
    expect(created.statusCode).toBe(201);
    const basic = `Basic ${Buffer.from('basicuser:pw-basic').toString('base64')}`;
    expect(await whoami({ authorization: basic })).toMatchObject({ status: 200, body: { login: 'basicuser' } });
    const badBasic = `Basic ${Buffer.from('basicuser:wrong').toString('base64')}`;
    expect(await whoami({ authorization: badBasic })).toEqual({ status: 401, body: { error: 'Wrong login or password' } });

    const login = await gateway.inject({ method: 'POST', url: '/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'login=basicuser&password=pw-basic' });
    expect(login.json()).toEqual({ login: 'success' });
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    expect(await whoami({ cookie })).toMatchObject({ status: 200, body: { login: 'basicuser' } });
    // A stale cookie does not lock anyone out of /login: it counts as anonymous.
    expect(await whoami({ cookie: 'session=stale' })).toEqual({ status: 401, body: { error: 'Session expired or unknown' } });
  });

  it('verifies JWT bearer tokens locally', async () => {
    const sign = createSigner({ key: JWT_SECRET, expiresIn: 60_000 });
    expect(await whoami({ authorization: `Bearer ${sign({ sub: 'testuser' })}` })).toMatchObject({ status: 200, body: { login: 'testuser' } });
    expect(await whoami({ authorization: `Bearer ${sign({ preferred_username: 'testuser2', sub: 'x' })}` })).toMatchObject({ status: 200, body: { login: 'testuser2' } });
    const forged = createSigner({ key: 'k'.repeat(40) })({ sub: 'admin' });
    expect((await whoami({ authorization: `Bearer ${forged}` })).status).toBe(401);
    const expired = createSigner({ key: JWT_SECRET })({ sub: 'testuser', exp: Math.floor(Date.now() / 1000) - 10 });
    expect(await whoami({ authorization: `Bearer ${expired}` })).toMatchObject({ status: 401, body: { error: expect.stringMatching(/^Invalid JWT/) } });
  });

  it('caches a resolved credential briefly, then asks again', async () => {
    const admin = { authorization: 'sage admin_token' };
    await gateway.inject({ method: 'POST', url: '/auth/users', headers: admin, payload: { login: 'shortlived' } });
    const created = await gateway.inject({ method: 'POST', url: '/auth/tokens', headers: admin, payload: { name: 't', login: 'shortlived' } });
    const token = created.json().token as string;
    expect(await whoami({ authorization: `sage ${token}` })).toMatchObject({ status: 200 });
    // Deleting the user publishes no revocation: the gateway keeps its cached answer until it expires.
    expect((await gateway.inject({ method: 'DELETE', url: '/auth/users/shortlived', headers: admin })).json()).toEqual({ deleted: 1 });
    expect(await whoami({ authorization: `sage ${token}` })).toMatchObject({ status: 200, body: { login: 'shortlived' } });
    await new Promise((r) => setTimeout(r, 2100));
    expect(await whoami({ authorization: `sage ${token}` })).toEqual({ status: 401, body: { error: 'Token not found' } });
  });

  it('drops a revoked token at once, without waiting for the cache', async () => {
    const user = { authorization: 'sage testuser_token' };
    const created = await gateway.inject({ method: 'POST', url: '/auth/tokens', headers: user, payload: { name: 'revoke-me' } });
    const { token, id } = created.json();
    // The token as a Basic password, as `docker login` stores it, is cached under its own key.
    const basic = { authorization: `Basic ${Buffer.from(`anyone:${token}`).toString('base64')}` };
    expect((await whoami({ authorization: `sage ${token}` })).status).toBe(200);
    expect(await whoami(basic)).toMatchObject({ status: 200, body: { login: 'testuser' } });
    expect((await gateway.inject({ method: 'DELETE', url: `/auth/tokens/${id}`, headers: user })).statusCode).toBe(200);
    // Well inside the 2 s cache lifetime: only the revocation event can explain a 401 here.
    for (const credential of [{ authorization: `sage ${token}` }, basic]) {
      let status = 200;
      for (let i = 0; i < 50 && status === 200; i++) {
        status = (await whoami(credential)).status;
        if (status === 200) await new Promise((r) => setTimeout(r, 20));
      }
      expect(status).toBe(401);
    }
  });

  it('propagates request ids to the service and back', async () => {
    const res = await get('/auth/whoami', { authorization: 'sage testuser_token', 'x-request-id': 'trace-42' });
    expect(res.headers['x-request-id']).toBe('trace-42');
  });

  it('serves the merged OpenAPI document and a rendered reference', async () => {
    const doc = (await get('/openapi.json')).json();
    expect(doc.openapi).toBe('3.1.0');
    for (const path of ['/apps/{namespace}/{repository}/{version}', '/register', '/api/v1/requests', '/pipeline', '/image', '/api/recording/create']) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
    const docs = await get('/docs/');
    expect(docs.statusCode).toBe(200);
    expect(docs.headers['content-type']).toContain('text/html');
    expect(docs.body).toContain('swagger');
  });

  it('answers 502 naming the service when it is down, and /readyz says which', async () => {
    const down = (await buildGateway(loadGatewayConfig({ ...env.env, ...services.upstreamEnv, DOCKYARD_BUILD_URL: 'http://127.0.0.1:9' }))).app;
    try {
      const res = await down.inject({ url: '/builds/sage/simple/1.0', headers: { authorization: 'sage testuser_token' } });
      expect(res.statusCode).toBe(502);
      expect(res.json()).toEqual({ error: 'Service build is unavailable' });
      const ready = await down.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks.build).toEqual({ ok: false, error: expect.stringContaining('127.0.0.1:9') });
      expect(ready.json().checks.registry).toEqual({ ok: true });
    } finally {
      await down.close();
    }
  });

  it('is ready while one replica of a service is, and not ready when none is', async () => {
    const live = services.upstreamEnv.DOCKYARD_BUILD_URL;
    const one = (await buildGateway(loadGatewayConfig({ ...env.env, ...services.upstreamEnv, DOCKYARD_BUILD_URL: `http://127.0.0.1:9,${live}` }))).app;
    const none = (await buildGateway(loadGatewayConfig({ ...env.env, ...services.upstreamEnv, DOCKYARD_BUILD_URL: 'http://127.0.0.1:9,http://127.0.0.1:7' }))).app;
    try {
      const ready = await one.inject({ url: '/readyz' });
      expect(ready.statusCode).toBe(200);
      expect(ready.json().checks.build).toEqual({ ok: true });
      const notReady = await none.inject({ url: '/readyz' });
      expect(notReady.statusCode).toBe(503);
      // Every replica's failure is named.
      expect(notReady.json().checks.build.error).toMatch(/127\.0\.0\.1:9 unreachable.*127\.0\.0\.1:7 unreachable/);
    } finally {
      await one.close();
      await none.close();
    }
  });

  it('limits the request rate per identity', async () => {
    const limited = (await buildGateway(loadGatewayConfig({ ...env.env, ...services.upstreamEnv, DOCKYARD_RATE_LIMIT: '3' }))).app;
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await limited.inject({ url: '/auth/whoami', headers: { authorization: 'sage testuser_token' } })).statusCode);
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      const res = await limited.inject({ url: '/auth/whoami', headers: { authorization: 'sage testuser_token' } });
      expect(res.json().error).toMatch(/^Rate limit exceeded: at most 3 requests per minute/);
      // Another identity has its own budget.
      expect((await limited.inject({ url: '/auth/whoami', headers: { authorization: 'sage testuser2_token' } })).statusCode).toBe(200);
    } finally {
      await limited.close();
    }
  });
});
