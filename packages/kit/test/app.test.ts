import { createApp, badRequest, HttpError } from '../src/index.js';

async function appWithRoutes() {
  const app = createApp({ service: 'test', logLevel: 'silent' });
  app.get('/boom', async () => {
    throw new Error('secret internals');
  });
  app.get('/bad', async () => {
    throw badRequest('Field x is wrong');
  });
  app.get('/teapot', async () => {
    throw new HttpError(418, 'I am a teapot');
  });
  app.post(
    '/things',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: { name: { type: 'string' }, size: { type: 'integer' }, kind: { enum: ['a', 'b'] } },
        },
      },
    },
    async (request) => request.body,
  );
  await app.ready();
  return app;
}

describe('app factory', () => {
  let app: Awaited<ReturnType<typeof appWithRoutes>>;
  beforeAll(async () => {
    app = await appWithRoutes();
  });
  afterAll(() => app.close());

  it('answers unknown paths with a 404 in the {"error"} shape', async () => {
    const res = await app.inject({ url: '/nope' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: 'The requested resource was not found' });
  });

  it('hides internals of unexpected errors behind a 500', async () => {
    const res = await app.inject({ url: '/boom' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: 'Internal server error' });
  });

  it('keeps the status and message of HTTP errors', async () => {
    expect((await app.inject({ url: '/bad' })).json()).toEqual({ error: 'Field x is wrong' });
    const teapot = await app.inject({ url: '/teapot' });
    expect(teapot.statusCode).toBe(418);
    expect(teapot.json()).toEqual({ error: 'I am a teapot' });
  });

  it('names the field in validation errors', async () => {
    const post = (payload: unknown) => app.inject({ method: 'POST', url: '/things', payload: payload as object });
    expect((await post({ name: 'a', colour: 'red' })).json()).toEqual({ error: 'Field colour not supported' });
    expect((await post({})).json()).toEqual({ error: 'Field name is required' });
    const wrongType = await post({ name: 'a', size: 'big' });
    expect(wrongType.statusCode).toBe(400);
    expect(wrongType.json().error).toMatch(/size must be integer/);
    expect((await post({ name: 'a', kind: 'c' })).json().error).toBe('kind must be one of: a, b');
  });

  it('gives every response a request id, reusing the caller\'s', async () => {
    const res = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
    expect(res.headers['x-request-id']).toBe('abc-123');
    expect(res.headers['x-dockyard-service']).toBe('test');
    expect((await app.inject({ url: '/healthz' })).headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses too large bodies with 413', async () => {
    const res = await app.inject({ method: 'POST', url: '/things', payload: { name: 'x'.repeat(2 * 1024 * 1024) } });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toEqual({ error: 'Request body is too large' });
  });

  it('refuses a declared oversized body before reading it and keeps the connection for the next request', async () => {
    const { request: httpRequest, Agent } = await import('node:http');
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as { port: number };
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (body: Buffer) =>
      new Promise<{ status: number; body: string; socket: unknown }>((resolve, reject) => {
        const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/things', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: text, socket: req.socket }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const big = await send(Buffer.alloc(3 * 1024 * 1024, 'x'));
    expect([big.status, JSON.parse(big.body)]).toEqual([413, { error: 'Request body is too large' }]);
    const next = await send(Buffer.from('{"name":"after"}'));
    expect([next.status, JSON.parse(next.body)]).toEqual([200, { name: 'after' }]);
    // The same socket: the 413 did not cost the connection.
    expect(next.socket).toBe(big.socket);
    agent.destroy();
  });

  it('serves readiness from registered checks and metrics in Prometheus format', async () => {
    const ready = createApp({ service: 'r', logLevel: 'silent' });
    await ready.ready();
    ready.readiness.set('ok', async () => undefined);
    ready.readiness.set('db', async () => {
      throw new Error('connection refused');
    });
    const res = await ready.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({ status: 'not ready', checks: { ok: { ok: true }, db: { ok: false, error: 'connection refused' } } });
    ready.readiness.delete('db');
    expect((await ready.inject({ url: '/readyz' })).statusCode).toBe(200);
    const metrics = await ready.inject({ url: '/metrics' });
    expect(metrics.body).toContain('http_request_duration_seconds_bucket');
    expect(metrics.body).toContain('route="/readyz"');
    await ready.close();
  });
});
