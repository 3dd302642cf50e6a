/**
 * Processes for the multi-node test: a NATS cluster (one nats-server per node, routes on
 * loopback, each its own JetStream dir), a private PostgreSQL (initdb + pg_ctl into a temp dir),
 * and Dockyard service processes spawned as deploy/local/stack.sh does (`node --import tsx src/server.ts`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connectNats, json, type NatsConnection } from '@dockyard/kit';
import { freePort, until, waitForPort } from '@dockyard/kit/testing';

const run = promisify(execFile);
export const ROOT = path.resolve(import.meta.dirname, '../..');

/** Only what a child needs from this environment: no test run's DATABASE_URL, schema or prefix leaks in. */
export function baseEnv(): NodeJS.ProcessEnv {
  const keep = ['PATH', 'HOME', 'TMPDIR', 'DOCKER_HOST', 'LANG'];
  return Object.fromEntries(keep.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]]));
}

export interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
}

function spawnLogged(name: string, logDir: string, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv }): Proc {
  const log = path.join(logDir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd] });
  return { name, child, log };
}

export interface NatsCluster {
  urls: string[];
  nodes: Proc[];
  /** Waits until JetStream answers through the given URLs (a meta leader is elected). */
  ready(urls?: string[]): Promise<void>;
  stop(): void;
}

/** `size` nats-server processes forming one cluster with JetStream (`dy` cluster, loopback routes). */
export async function startNatsCluster(dir: string, logDir: string, size = 3): Promise<NatsCluster> {
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const clusterPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const nodes: Proc[] = [];
  for (let i = 0; i < size; i++) {
    const store = path.join(dir, `nats-${i}`);
    mkdirSync(store, { recursive: true });
    const routes = clusterPorts.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`);
    const conf = path.join(dir, `nats-${i}.conf`);
    writeFileSync(
      conf,
      `server_name: n${i}\nlisten: 127.0.0.1:${ports[i]}\njetstream { store_dir: "${store}" }\n` +
        `cluster { name: dy, listen: 127.0.0.1:${clusterPorts[i]}, routes: [${routes.join(', ')}] }\n`,
    );
    nodes.push(spawnLogged(`nats-${i}`, logDir, 'nats-server', ['-c', conf], {}));
  }
  await Promise.all(ports.map((p) => waitForPort(p)));
  const urls = ports.map((p) => `nats://127.0.0.1:${p}`);
  const ready = async (use = urls) => {
    const nc = await connectNats(use.join(','), 'multinode-test');
    try {
      await until(async () => {
        try {
          const info = json.decode<{ error?: unknown }>((await nc.request('$JS.API.INFO', '', { timeout: 2000 })).data);
          return info.error ? undefined : true;
        } catch {
          return undefined;
        }
      }, 'JetStream cluster ready', 60_000, 500);
    } finally {
      await nc.close();
    }
  };
  await ready();
  return { urls, nodes, ready, stop: () => nodes.forEach((n) => n.child.kill('SIGKILL')) };
}

export interface Postgres {
  url: string;
  /** Stops it at once (as a crash would: `-m immediate`) and starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** Rows of a query (psql, tab-separated columns). */
  query(sql: string): Promise<string[][]>;
}

/** A private PostgreSQL 15 in `dir` on a free port (run as the postgres user when this is root). */
export async function startPostgres(): Promise<Postgres> {
  const bin = '/usr/lib/postgresql/15/bin';
  // Its own temp dir: the postgres user must be able to reach it.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-pg-'));
  const data = path.join(dir, 'pgdata');
  mkdirSync(data, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout), Number(gid));
    chownSync(data, Number(stdout), Number(gid));
  }
  const as = (cmd: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', cmd, ...args]) : run(cmd, args));
  await as(`${bin}/initdb`, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const log = path.join(dir, 'postgres.log');
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c shared_buffers=64MB`;
  const start = async () => {
    await as(`${bin}/pg_ctl`, ['-D', data, '-l', log, '-o', opts, '-w', '-t', '60', 'start']);
  };
  await start();
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    async restart() {
      await as(`${bin}/pg_ctl`, ['-D', data, '-m', 'immediate', '-w', 'stop']);
      await start();
    },
    async query(sql) {
      const { stdout } = await run(`${bin}/psql`, [`postgresql://postgres@127.0.0.1:${port}/postgres`, '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', sql], { maxBuffer: 64 * 1024 * 1024 });
      return stdout.split('\n').filter(Boolean).map((l) => l.split('\t'));
    },
    async stop() {
      await as(`${bin}/pg_ctl`, ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface NodeProc extends Proc {
  service: string;
  port: number;
  url: string;
}

/** One Dockyard process (a service or the gateway) on a free port; resolves when it is listening. */
export async function startNode(name: string, dir: 'gateway' | `services/${string}`, env: NodeJS.ProcessEnv, logDir: string): Promise<NodeProc> {
  const port = await freePort();
  const proc = spawnLogged(name, logDir, process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: path.join(ROOT, dir),
    env: { ...env, DOCKYARD_PORT: String(port), DOCKYARD_HOST: '127.0.0.1' },
  });
  return { ...proc, service: path.basename(dir), port, url: `http://127.0.0.1:${port}` };
}

/** Resolves when the process answers /healthz (it listens only once its app is ready). */
export async function healthy(node: NodeProc, ms = 420_000): Promise<void> {
  await until(async () => {
    if (node.child.exitCode !== null) throw new Error(`${node.name} exited (${node.child.exitCode}); see ${node.log}`);
    try {
      const res = await fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(2000) });
      return res.ok ? true : undefined;
    } catch {
      return undefined;
    }
  }, `${node.name} healthy`, ms, 500);
}

/** Every message of a stream, read by sequence through the JetStream API (subject and JSON payload). */
export async function readStream(nc: NatsConnection, stream: string): Promise<{ subject: string; data: Record<string, unknown> }[]> {
  const info = json.decode<{ state?: { first_seq: number; last_seq: number }; error?: { description: string } }>((await nc.request(`$JS.API.STREAM.INFO.${stream}`, '', { timeout: 10_000 })).data);
  if (!info.state) throw new Error(`stream ${stream}: ${info.error?.description}`);
  const out: { subject: string; data: Record<string, unknown> }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const got = json.decode<{ message?: { subject: string; data: string } }>((await nc.request(`$JS.API.STREAM.MSG.GET.${stream}`, json.encode({ seq }), { timeout: 10_000 })).data);
    if (got.message) out.push({ subject: got.message.subject, data: JSON.parse(Buffer.from(got.message.data, 'base64').toString()) });
  }
  return out;
}
