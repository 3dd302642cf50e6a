/**
 * Several replicas per service: the gateway takes them in turn, and a request a replica provably
 * never received (connection refused; reset before the body left) goes to the next one. A request a
 * replica did receive is never sent twice.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createApp } from '@dockyard/kit';
import { freePort } from '@dockyard/kit/testing';
import { serviceProxy } from '../src/proxy.js';
import { neverReceived } from '../src/forward.js';

interface Seen {
  server: string;
  method: string;
  body: string;
}

/** A stand-in replica that records what it received and echoes its name. */
function replica(name: string, seen: Seen[], behaviour: 'ok' | 'reset-after-body' = 'ok'): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ server: name, method: req.method!, body: Buffer.concat(chunks).toString() });
      if (behaviour === 'reset-after-body') return void req.socket.destroy();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ server: name }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server })));
}

async function gatewayFor(upstreams: string[]): Promise<FastifyInstance> {
  const app = createApp({ service: 'gateway', logLevel: 'silent', earlyBodyLimit: false });
  await app.register(serviceProxy, { service: 'registry', upstreams, prefixes: ['/apps'], identityToken: () => 'token' });
  await app.ready();
  return app;
}

describe('gateway: several upstreams per service, round robin with failover', () => {
  const servers: http.Server[] = [];
  afterAll(() => servers.forEach((s) => s.close()));

  it('takes live replicas in turn', async () => {
    const seen: Seen[] = [];
    const a = await replica('a', seen);
    const b = await replica('b', seen);
    servers.push(a.server, b.server);
    const app = await gatewayFor([a.url, b.url]);
    const answers: string[] = [];
    for (let i = 0; i < 6; i++) answers.push((await app.inject({ method: 'GET', url: '/apps/x' })).json().server);
    expect(answers).toEqual(['a', 'b', 'a', 'b', 'a', 'b']);
    await app.close();
  });

  it('sends a request whose connection was refused to the next replica, bodies intact, each received once', async () => {
    const seen: Seen[] = [];
    const live = await replica('live', seen);
    servers.push(live.server);
    const dead = `http://127.0.0.1:${await freePort()}`; // nothing listens: connection refused
    const app = await gatewayFor([dead, live.url, dead]);
    for (let i = 0; i < 9; i++) {
      const method = (['GET', 'POST', 'PUT'] as const)[i % 3];
      const res = await app.inject({ method, url: `/apps/${i}`, payload: method === 'GET' ? undefined : `body-${i}`, headers: method === 'GET' ? {} : { 'content-type': 'text/plain' } });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ server: 'live' });
    }
    expect(seen).toHaveLength(9);
    expect(seen.filter((s) => s.method !== 'GET').map((s) => s.body)).toEqual(['body-1', 'body-2', 'body-4', 'body-5', 'body-7', 'body-8']);
    await app.close();
  });

  it('does not repeat a POST a replica received before its connection was reset: 502 instead', async () => {
    const seen: Seen[] = [];
    const flaky = await replica('flaky', seen, 'reset-after-body');
    const live = await replica('live', seen);
    servers.push(flaky.server, live.server);
    const app = await gatewayFor([flaky.url, live.url]);
    const res = await app.inject({ method: 'POST', url: '/apps/x', payload: 'once', headers: { 'content-type': 'text/plain' } });
    expect(res.statusCode).toBe(502);
    expect(res.json()).toEqual({ error: 'Service registry is unavailable' });
    expect(seen).toEqual([{ server: 'flaky', method: 'POST', body: 'once' }]);
    await app.close();
  });

  it('answers 502 when every replica refuses', async () => {
    const app = await gatewayFor([`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`]);
    const res = await app.inject({ method: 'GET', url: '/apps' });
    expect(res.statusCode).toBe(502);
    await app.close();
  });

  it('neverReceived: refused always; reset only before the body was read, or for idempotent methods without one', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const reset = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET', cause: { code: 'ECONNRESET' } });
    const unread = { readableDidRead: false } as never;
    const read = { readableDidRead: true } as never;
    expect(neverReceived(refused, 'POST', unread)).toBe(true);
    expect(neverReceived(refused, 'GET', null)).toBe(true);
    expect(neverReceived(reset, 'GET', null)).toBe(true);
    expect(neverReceived(reset, 'POST', null)).toBe(false);
    expect(neverReceived(reset, 'POST', unread)).toBe(true);
    expect(neverReceived(reset, 'POST', read)).toBe(false);
    expect(neverReceived(new Error('timeout'), 'GET', null)).toBe(false);
  });
});
