/**
 * A service may answer before it has read the body (a 401, 403 or 404 before an upload). The
 * gateway must then read and drop the rest of the client's body, or the next request on the
 * client's keep-alive connection is never parsed: with one replica it stalled, with two the
 * connection was closed. The fuzzer saw both as requests that needed a second try.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createApp } from '@dockyard/kit';
import { serviceProxy } from '../src/proxy.js';

/** A stand-in service that answers 404 as soon as a request's headers are in and never reads a body. */
function refusingReplica(): Promise<http.Server> {
  const server = http.createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"Not found"}');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** One raw keep-alive connection, to send requests in pieces and read the answers' status lines. */
async function connection(port: number) {
  const sock = net.connect(port, '127.0.0.1');
  let received = '';
  sock.on('data', (d) => (received += d.toString('latin1')));
  sock.on('error', () => undefined);
  await new Promise((resolve) => sock.once('connect', resolve));
  const statusLines = () => received.split('\r\n').filter((l) => l.startsWith('HTTP/1.1 '));
  return {
    sock,
    write: (text: string) => new Promise<void>((resolve) => sock.write(text, () => resolve())),
    /** Waits (up to 5 s) until `n` answers have arrived; returns their status lines. */
    answers: async (n: number) => {
      for (let i = 0; i < 100 && statusLines().length < n && !sock.destroyed; i++) await new Promise((r) => setTimeout(r, 50));
      return statusLines();
    },
  };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('gateway: a service that answers before reading the body', () => {
  const servers: http.Server[] = [];
  const gateways: FastifyInstance[] = [];
  afterAll(async () => {
    for (const g of gateways) g.server.closeAllConnections();
    await Promise.all(gateways.map((g) => g.close()));
    servers.forEach((s) => s.close());
  });

  async function gatewayWith(replicas: number): Promise<number> {
    const upstreams: string[] = [];
    for (let i = 0; i < replicas; i++) {
      const server = await refusingReplica();
      servers.push(server);
      upstreams.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    }
    const app = createApp({ service: 'gateway', logLevel: 'silent', earlyBodyLimit: false });
    await app.register(serviceProxy, { service: 'execution', upstreams, prefixes: ['/pipeline'], identityToken: () => 'token' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    gateways.push(app);
    return (app.server.address() as AddressInfo).port;
  }

  it.each([1, 2])('keeps the connection usable after an upload answered early (%i replica(s))', async (replicas) => {
    const c = await connection(await gatewayWith(replicas));
    // A chunked upload whose body is still arriving when the answer comes back.
    await c.write('POST /pipeline/1/job HTTP/1.1\r\nhost: t\r\ncontent-type: multipart/form-data; boundary=b\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
    expect(await c.answers(1)).toEqual(['HTTP/1.1 404 Not Found']);
    for (let i = 0; i < 4; i++) {
      await c.write(`4000\r\n${'x'.repeat(0x4000)}\r\n`);
      await pause(20);
    }
    await c.write('0\r\n\r\n');
    // The next request on the same connection gets its answer.
    await c.write('GET /pipeline/2 HTTP/1.1\r\nhost: t\r\n\r\n');
    expect(await c.answers(2)).toEqual(['HTTP/1.1 404 Not Found', 'HTTP/1.1 404 Not Found']);
    expect(c.sock.destroyed).toBe(false);
    c.sock.destroy();
  });

  it('ends the connection rather than read an unread rest larger than 8 MiB', async () => {
    const c = await connection(await gatewayWith(1));
    const block = Buffer.alloc(1024 * 1024, 'x');
    // The first MiB goes with the headers (undici sends a request's headers with its first body bytes).
    await c.write('POST /pipeline/1/job HTTP/1.1\r\nhost: t\r\ncontent-type: application/octet-stream\r\ncontent-length: 104857600\r\n\r\n');
    await new Promise((resolve) => c.sock.write(block, resolve));
    expect(await c.answers(1)).toEqual(['HTTP/1.1 404 Not Found']);
    let sent = 1;
    while (!c.sock.destroyed && sent < 100) {
      const ok = await new Promise<boolean>((resolve) => c.sock.write(block, (err) => resolve(!err)));
      if (!ok) break;
      sent++;
    }
    for (let i = 0; i < 50 && !c.sock.destroyed; i++) await pause(50);
    expect(c.sock.destroyed).toBe(true);
    expect(sent).toBeLessThan(100);
  });
});
