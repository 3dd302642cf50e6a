/**
 * The README's run path: deploy/local/stack.sh (what `make up` ends with) starts the six services
 * on embedded PGlite and the gateway, and the gateway's /readyz reports all six ready. Runs on its
 * own ports, run dir, data dir and NATS prefix, so a stack already running here is left alone.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { infra } from '@dockyard/kit/testing';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..');

describe('make up: the whole platform on one machine', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-stack-'));
  const gatewayPort = 18000 + Math.floor(Math.random() * 1000);
  const env = {
    ...process.env,
    NODE_OPTIONS: '',
    DATABASE_URL: '',
    DOCKYARD_NATS_URL: infra().natsUrl,
    DOCKYARD_RUN_DIR: path.join(dir, 'run'),
    DOCKYARD_DATA_DIR: path.join(dir, 'data'),
    DOCKYARD_STACK_PORT_BASE: String(gatewayPort + 100),
    DOCKYARD_GATEWAY_PORT: String(gatewayPort),
    DOCKYARD_GATEWAY_HOST: '127.0.0.1',
    DOCKYARD_NATS_PREFIX: `stack${process.pid}.`,
    DOCKYARD_SEED_TEST_USERS: '1',
  };
  afterAll(async () => {
    await run(path.join(root, 'deploy/local/stack.sh'), ['down'], { env }).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts every service and the gateway, all ready, and prints the admin token', async () => {
    const { stdout } = await run(path.join(root, 'deploy/local/stack.sh'), ['up'], { env, timeout: 170_000 });
    expect(stdout).toContain(`Dockyard is up: http://127.0.0.1:${gatewayPort}`);
    const token = /Admin token:\s+(\S+)/.exec(stdout)![1];
    const base = `http://127.0.0.1:${gatewayPort}`;
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    const { checks } = (await ready.json()) as { checks: Record<string, { ok: boolean }> };
    for (const service of ['permissions', 'registry', 'build', 'execution', 'source-cache', 'process', 'nats']) expect(checks[service]).toEqual({ ok: true });
    const me = await fetch(`${base}/auth/whoami`, { headers: { authorization: `Bearer ${token}` } });
    expect(await me.json()).toMatchObject({ login: 'admin', admin: true });
    const testuser = await fetch(`${base}/auth/whoami`, { headers: { authorization: 'sage testuser_token' } });
    expect(await testuser.json()).toMatchObject({ login: 'testuser' });
    // The gateway's access log: one JSON line per request, flushed within half a second.
    await new Promise((r) => setTimeout(r, 800));
    const lines = readFileSync(path.join(dir, 'run/logs/stack-gateway.log'), 'utf8').split('\n').filter((l) => l.startsWith('{'));
    const access = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && l.url === '/auth/whoami');
    expect(access).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ level: 30, service: 'gateway', method: 'GET', status: 200, user: 'admin' }),
        expect.objectContaining({ status: 200, user: 'testuser' }),
      ]),
    );
  }, 180_000);
});
