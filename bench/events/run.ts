/**
 * Events relay benchmark: latency from a JetStream publish to an SSE client of the gateway's
 * `GET /events` receiving it, with 1 and with 50 connected clients, and events/s to one client.
 *
 *   eval "$(deploy/local/infra.sh env)" && node --import tsx bench/events/run.ts
 *
 * Starts the permissions service (seeded test users; its own PostgreSQL schema) and the gateway
 * (one process: DOCKYARD_GATEWAY_WORKERS=1, rate limit off) as child processes on free ports with a
 * fresh NATS prefix. The SSE clients (testuser's token: every event is checked against the
 * caller, ownerId rule) and the publisher (kit EventPublisher) run in this process; each event
 * carries its publish time (performance.timeOrigin + now(), same host clock).
 *
 *   (1) latency, 1 client:   BENCH_EVENTS (500) job.state events, one every BENCH_INTERVAL_MS (10)
 *   (2) latency, 50 clients: the same events, each delivered to all 50 (latency per delivery)
 *   (3) throughput, live:    BENCH_BURST (20000) events published back to back (256 in flight), one client
 *   (4) throughput, resume:  the same events replayed to a new client with Last-Event-ID (catch-up)
 *
 * Prints p50/p95/p99/max latency in ms and events/s; raw figures go to
 * bench/results/events-<timestamp>.json. Deletes its EVENTS stream, schema and data dir at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventPublisher, Subjects, connectNats } from '@dockyard/kit';
import { freePort, testEnv } from '@dockyard/kit/testing';
import { SseClient } from '../../gateway/test/events-client.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const knob = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const EVENTS = knob('BENCH_EVENTS', 500);
const INTERVAL_MS = knob('BENCH_INTERVAL_MS', 10);
const CLIENTS = knob('BENCH_CLIENTS', 50);
const BURST = knob('BENCH_BURST', 20_000);
const log = (s: string) => process.stdout.write(`${s}\n`);
const now = () => performance.timeOrigin + performance.now();

const procs: ChildProcess[] = [];
function start(cwd: string, env: NodeJS.ProcessEnv, logFile: string): ChildProcess {
  const fd = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd, env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  procs.push(child);
  return child;
}
async function waitHealthy(child: ChildProcess, url: string, logFile: string): Promise<void> {
  for (const deadline = Date.now() + 120_000; ; await sleep(250)) {
    if (child.exitCode !== null) throw new Error(`exited:\n${fs.readFileSync(logFile, 'utf8').slice(-3000)}`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    if (Date.now() > deadline) throw new Error(`${url} not healthy in 120 s`);
  }
}
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const summary = (samples: number[]) => {
  const s = [...samples].sort((a, b) => a - b);
  const r = (v: number) => Math.round(v * 100) / 100;
  return { n: s.length, p50: r(pct(s, 50)), p95: r(pct(s, 95)), p99: r(pct(s, 99)), max: r(s[s.length - 1]) };
};

const env = testEnv();
const subjects = new Subjects(env.env.DOCKYARD_NATS_PREFIX);
const results: Record<string, unknown> = { startedAt: new Date().toISOString(), loadBefore: os.loadavg(), events: EVENTS, intervalMs: INTERVAL_MS, clients: CLIENTS, burst: BURST };
let nc: Awaited<ReturnType<typeof connectNats>> | null = null;
const clients: SseClient[] = [];

async function cleanup(): Promise<void> {
  for (const c of clients) c.close();
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))));
  if (nc) {
    await nc.request(`$JS.API.STREAM.DELETE.${subjects.stream('EVENTS')}`, undefined, { timeout: 3000 }).catch(() => undefined);
    await nc.drain();
  }
  await env.cleanup();
}

try {
  const servicePort = await freePort();
  const gatewayPort = await freePort();
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DOCKYARD_') && k !== 'NODE_OPTIONS') base[k] = v;
  const serviceLog = path.join(env.dataDir, 'permissions.log');
  const service = start(path.join(REPO_ROOT, 'services/permissions'), { ...base, ...env.serviceEnv('permissions'), DOCKYARD_PORT: String(servicePort), DOCKYARD_SEED_TEST_USERS: '1', DOCKYARD_LOG_LEVEL: 'warn' }, serviceLog);
  await waitHealthy(service, `http://127.0.0.1:${servicePort}/healthz`, serviceLog);
  const upstreams = Object.fromEntries(['PERMISSIONS', 'REGISTRY', 'BUILD', 'EXECUTION', 'SOURCE_CACHE', 'PROCESS'].map((s) => [`DOCKYARD_${s}_URL`, `http://127.0.0.1:${servicePort}`]));
  const gatewayLog = path.join(env.dataDir, 'gateway.log');
  const gateway = start(path.join(REPO_ROOT, 'gateway'), { ...base, ...env.env, ...upstreams, DOCKYARD_PORT: String(gatewayPort), DOCKYARD_HOST: '127.0.0.1', DOCKYARD_RATE_LIMIT: '0', DOCKYARD_LOG_LEVEL: 'warn', DOCKYARD_GATEWAY_WORKERS: '1' }, gatewayLog);
  await waitHealthy(gateway, `http://127.0.0.1:${gatewayPort}/healthz`, gatewayLog);
  const url = `http://127.0.0.1:${gatewayPort}/events`;
  const auth = { authorization: 'sage testuser_token' };
  const { id: ownerId } = (await (await fetch(`http://127.0.0.1:${gatewayPort}/auth/whoami`, { headers: auth })).json()) as { id: string };

  nc = await connectNats(env.env.DOCKYARD_NATS_URL, 'bench-events');
  const publisher = new EventPublisher(nc, subjects);
  await publisher.ensureStream();
  const publish = (n: number) => {
    const id = randomUUID();
    return publisher.publish('events.execution.job.state', { id, occurredAt: new Date().toISOString(), actor: null, resource: `job:${n}`, ownerId, jobId: n, pipelineId: 1, state: 'running', previousState: 'in_queue', reason: null, exitCode: null, sentAt: now() }, id);
  };

  /** Opens `count` clients recording each delivery's latency; publishes EVENTS paced events; waits for all deliveries. */
  async function latency(count: number) {
    const samples: number[] = [];
    const opened: SseClient[] = [];
    for (let i = 0; i < count; i++) {
      const c = await SseClient.open(url, auth);
      if (c.status !== 200) throw new Error(`GET /events answered ${c.status} ${c.body}`);
      c.onEvent = (e) => samples.push(now() - (JSON.parse(e.data) as { sentAt: number }).sentAt);
      opened.push(c);
      clients.push(c);
    }
    // A few unmeasured events first (connections and caches warm).
    for (let i = 0; i < 20; i++) await publish(-1);
    await Promise.all(opened.map((c) => c.waitFor(() => c.events.length >= 20, 'warm-up')));
    samples.length = 0;
    for (let i = 0; i < EVENTS; i++) {
      await publish(i);
      await sleep(INTERVAL_MS);
    }
    await Promise.all(opened.map((c) => c.waitFor(() => c.events.length >= 20 + EVENTS, 'all deliveries', 300_000)));
    for (const c of opened) c.close();
    return summary(samples);
  }

  log(`(1) latency, 1 client, ${EVENTS} events every ${INTERVAL_MS} ms`);
  results.one = await latency(1);
  log(`    ${JSON.stringify(results.one)}`);
  log(`(2) latency, ${CLIENTS} clients`);
  results.many = await latency(CLIENTS);
  log(`    ${JSON.stringify(results.many)}`);

  log(`(3) throughput to one client, ${BURST} events published back to back`);
  const live = await SseClient.open(url, auth);
  clients.push(live);
  const t0 = now();
  const inflight = new Set<Promise<void>>();
  for (let i = 0; i < BURST; i++) {
    const p = publish(i).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 256) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const published = now();
  await live.waitFor(() => live.events.length >= BURST, 'burst delivered', 600_000);
  const delivered = now();
  const firstId = live.events[0].id;
  results.live = { events: BURST, publishEventsPerS: Math.round(BURST / ((published - t0) / 1000)), deliveredEventsPerS: Math.round(BURST / ((delivered - t0) / 1000)), lagAfterLastPublishMs: Math.round(delivered - published) };
  log(`    ${JSON.stringify(results.live)}`);
  live.close();

  log('(4) throughput, catch-up: the same events replayed with Last-Event-ID');
  const t1 = now();
  const replay = await SseClient.open(url, { ...auth, 'last-event-id': String(Number(firstId) - 1) });
  clients.push(replay);
  await replay.waitFor(() => replay.events.length >= BURST, 'replay delivered', 600_000);
  results.replay = { events: BURST, eventsPerS: Math.round(BURST / ((now() - t1) / 1000)) };
  log(`    ${JSON.stringify(results.replay)}`);
  replay.close();

  results.loadAfter = os.loadavg();
  log(`load average before ${(results.loadBefore as number[]).map((v) => v.toFixed(1)).join(' ')}, after ${(results.loadAfter as number[]).map((v) => v.toFixed(1)).join(' ')} (${os.cpus().length} cores)`);
  const out = path.join(REPO_ROOT, 'bench/results', `events-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(results, null, 2));
  log(`raw: ${path.relative(REPO_ROOT, out)}`);
} catch (err) {
  process.stderr.write(`benchmark failed: ${(err as Error).stack}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
