/**
 * Helpers for integration tests: every run gets its own database schemas, NATS subject prefix and
 * data directory, so runs (and parallel test files) never collide, and cleans up after itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';

/** The real servers `make test` starts; a clear message when a test is run without them. */
export function infra(): { databaseUrl: string; natsUrl: string } {
  const databaseUrl = process.env.DATABASE_URL;
  const natsUrl = process.env.DOCKYARD_NATS_URL;
  if (!databaseUrl || !natsUrl) {
    throw new Error('Integration tests need DATABASE_URL and DOCKYARD_NATS_URL: run them with `make test` (it starts PostgreSQL and NATS)');
  }
  return { databaseUrl, natsUrl };
}

export interface TestEnv {
  /** Unique per test file: prefixes schemas and NATS subjects. */
  id: string;
  env: Record<string, string>;
  dataDir: string;
  schemas: string[];
  /** Environment for one service, its schema unique to this run. */
  serviceEnv(service: string, extra?: Record<string, string>): NodeJS.ProcessEnv;
  cleanup(): Promise<void>;
}

export function testEnv(): TestEnv {
  const { databaseUrl, natsUrl } = infra();
  const id = `t${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `dockyard-${id}-`));
  const schemas: string[] = [];
  const env = {
    DATABASE_URL: databaseUrl,
    DOCKYARD_NATS_URL: natsUrl,
    DOCKYARD_NATS_PREFIX: `${id}.`,
    DOCKYARD_INTERNAL_SECRET: randomBytes(32).toString('hex'),
    DOCKYARD_DATA_DIR: dataDir,
    DOCKYARD_LOG_LEVEL: process.env.DOCKYARD_TEST_LOG_LEVEL ?? 'silent',
  };
  return {
    id,
    env,
    dataDir,
    schemas,
    serviceEnv(service, extra = {}) {
      const schema = `${id}_${service.replace(/-/g, '_')}`;
      schemas.push(schema);
      return { ...env, DOCKYARD_DB_SCHEMA: schema, DOCKYARD_PORT: '0', ...extra };
    },
    async cleanup() {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
      } finally {
        await client.end();
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A TCP port free on 127.0.0.1 right now (for servers a test or benchmark starts). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on 127.0.0.1:`port`; fails after `ms`. */
export async function waitForPort(port: number, ms = 20_000): Promise<void> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return;
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
}

/** `git daemon` serving every repository under `base` (read-only, all exported) on a free local port. */
export async function gitDaemon(base: string): Promise<{ port: number; url: (repo: string) => string; stop: () => void; child: ChildProcess }> {
  mkdirSync(base, { recursive: true });
  const port = await freePort();
  const child = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${base}`, `--port=${port}`, '--listen=127.0.0.1', base], { stdio: 'ignore' });
  await waitForPort(port);
  return { port, url: (repo) => `git://127.0.0.1:${port}/${repo}`, stop: () => child.kill(), child };
}

/** Polls `check` until it returns a value other than undefined; fails naming `what` after `ms`. */
export async function until<T>(check: () => Promise<T | undefined>, what: string, ms = 150_000, everyMs = 300): Promise<T> {
  for (const deadline = Date.now() + ms; ; await new Promise((r) => setTimeout(r, everyMs))) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
  }
}

/**
 * Waits until a JetStream stream holds `count` messages. A work-queue message leaves its stream
 * when acknowledged, which follows the stored result, so a test reading the stream right after an
 * item's final state must wait for it. Fails naming the count last seen.
 */
export async function untilStreamHolds(nc: NatsConnection, stream: string, count: number, ms = 30_000): Promise<void> {
  const jsm = await jetstreamManager(nc);
  let held = -1;
  await until(async () => ((held = (await jsm.streams.info(stream)).state.messages) === count ? true : undefined), `stream ${stream} to hold ${count} message(s)`, ms, 100).catch((err) => {
    throw new Error(`${(err as Error).message}; it holds ${held}`);
  });
}

export interface Stack {
  /** The gateway, e.g. http://127.0.0.1:18123 */
  base: string;
  gatewayPort: number;
  /** Services listen on portBase+1..+6: permissions, registry, build, execution, source-cache, process. */
  portBase: number;
  adminToken: string;
  /** The internal identity secret the services share with the gateway. */
  internalSecret: string;
  /** A temporary folder holding the stack's run dir (logs under run/logs) and data dir. */
  dir: string;
  /** The environment stack.sh ran with (for a second `stack.sh` call or child processes). */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/**
 * The whole platform as `make up` starts it (deploy/local/stack.sh: every service a process, the
 * gateway in front), on its own ports, run dir, data dir and NATS prefix, with embedded PGlite unless
 * `env.DATABASE_URL` is given, and ECR's fixed test identities seeded (testuser_token, ...).
 * Takes 30-90 s to start on this machine; start it once per test file.
 */
export async function startStack(env: NodeJS.ProcessEnv = {}): Promise<Stack> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { readFileSync } = await import('node:fs');
  const run = promisify(execFile);
  const root = path.resolve(import.meta.dirname, '../../..');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-stack-'));
  const gatewayPort = await freePort();
  const portBase = 20000 + Math.floor(Math.random() * 10000);
  const stackEnv: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_OPTIONS: '',
    DATABASE_URL: '',
    DOCKYARD_NATS_URL: infra().natsUrl,
    DOCKYARD_RUN_DIR: path.join(dir, 'run'),
    DOCKYARD_DATA_DIR: path.join(dir, 'data'),
    DOCKYARD_STACK_PORT_BASE: String(portBase),
    DOCKYARD_GATEWAY_PORT: String(gatewayPort),
    DOCKYARD_GATEWAY_HOST: '127.0.0.1',
    DOCKYARD_NATS_PREFIX: `stack${process.pid}${randomBytes(2).toString('hex')}.`,
    DOCKYARD_SEED_TEST_USERS: '1',
    ...env,
  };
  const script = path.join(root, 'deploy/local/stack.sh');
  const stop = async () => {
    await run(script, ['down'], { env: stackEnv }).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const { stdout } = await run(script, ['up'], { env: stackEnv, timeout: 330_000 });
    const adminToken = /Admin token:\s+(\S+)/.exec(stdout)?.[1];
    if (!adminToken) throw new Error(`stack.sh up printed no admin token:\n${stdout}`);
    const internalSecret = readFileSync(path.join(dir, 'run/internal-secret'), 'utf8').trim();
    return { base: `http://127.0.0.1:${gatewayPort}`, gatewayPort, portBase, adminToken, internalSecret, dir, env: stackEnv, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
