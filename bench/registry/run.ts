/**
 * Registry benchmark: the ECR read path and the submit path, through the gateway with a token.
 *
 *   node --import tsx bench/registry/run.ts     (repository root; PostgreSQL and NATS running,
 *                                                 DATABASE_URL set: eval "$(deploy/local/infra.sh env)")
 *
 * Starts the permissions service (seeded test users: `sage testuser_token`), the registry and the
 * gateway as processes (node --import tsx src/server.ts, as deploy/local/stack.sh does), on free
 * ports, on PostgreSQL (DATABASE_URL, a fresh schema per service, dropped at the end), with their own
 * NATS prefix (streams deleted at the end). Then, with autocannon in this process:
 *   (a) GET /apps/bench/app/1.0 directly on the registry (an identity token signed here): the service alone
 *   (b) GET /apps/bench/app/1.0 through the gateway, `Authorization: sage testuser_token`   <- the target
 *   (c) POST /apps/bench/nc/<n> through the gateway, registry restarted with DOCKYARD_REGISTRY_SKIP_CLONE=1:
 *       the submit API path without git (parse, validate, permission checks, insert, event)
 *   (d) POST /apps/bench/git/<n> through the gateway, registry with cloning on: a tiny local repository
 *       (file://, allowed by DOCKYARD_GIT_ALLOW=file://): clone + archive + ecr-meta import per submit
 * Every submit gets a new version (no 409s). Prints req/s, p50/p99 latency, non-2xx/errors, and the
 * CPU each process used. Raw results: bench/results/registry-<timestamp>.json.
 *
 * Knobs: BENCH_DURATION (s, default 10; (d) runs twice as long), BENCH_CONNECTIONS (GET, default 50),
 * BENCH_SUBMIT_CONNECTIONS ((c), default 10), BENCH_CLONE_CONNECTIONS ((d), default 4), BENCH_WARMUP (s, default 2).
 */
import autocannon from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectNats, IDENTITY_HEADER, identitySigner } from '@dockyard/kit';
import { testEnv, freePort } from '@dockyard/kit/testing';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const num = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const DURATION = num('BENCH_DURATION', 10);
const CONNECTIONS = num('BENCH_CONNECTIONS', 50);
const SUBMIT_CONNECTIONS = num('BENCH_SUBMIT_CONNECTIONS', 10);
const CLONE_CONNECTIONS = num('BENCH_CLONE_CONNECTIONS', 4);
const WARMUP = num('BENCH_WARMUP', 2);
const AUTH = 'sage testuser_token';
const log = (msg: string) => process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ------------------------------------------------------------------------------------ processes

interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  exit: Promise<void>;
}
const procs = new Set<Proc>();

function start(name: string, cwd: string, env: NodeJS.ProcessEnv, logFile: string): Proc {
  const fd = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd, env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const proc: Proc = { name, child, logFile, exit: new Promise((r) => child.once('exit', () => r())) };
  procs.add(proc);
  return proc;
}

async function stop(proc: Proc): Promise<void> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
    await proc.exit;
    clearTimeout(timer);
  }
  procs.delete(proc);
}


async function waitReady(proc: Proc, url: string): Promise<void> {
  for (const deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(250)) {
    if (proc.child.exitCode !== null) break;
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false);
    if (ok) return;
  }
  throw new Error(`${proc.name} not ready at ${url}; last lines of ${proc.logFile}:\n${fs.readFileSync(proc.logFile, 'utf8').split('\n').slice(-20).join('\n')}`);
}

/** User+system CPU seconds of a process and its children (gateway cluster workers), from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  const tick = 100;
  let total = 0;
  const pids = [pid];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) pids.push(Number(entry));
    } catch {}
  }
  for (const p of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / tick;
    } catch {}
  }
  return total;
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusy(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2]) / 100;
}

// ------------------------------------------------------------------------------------ load

interface Row {
  label: string;
  reqPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  cpu: Record<string, number>;
  raw: autocannon.Result;
}

function cannon(opts: autocannon.Options): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => autocannon(opts, (err, result) => (err ? reject(err) : resolve(result))));
}

async function measure(label: string, opts: autocannon.Options, who: Record<string, Proc>, durationFactor = 1): Promise<Row> {
  if (WARMUP) await cannon({ ...opts, duration: WARMUP });
  const before = Object.fromEntries(Object.entries(who).map(([k, p]) => [k, cpuSeconds(p.child.pid)]));
  const self0 = process.cpuUsage();
  const machine0 = machineBusy();
  const t0 = performance.now();
  const raw = await cannon({ ...opts, duration: DURATION * durationFactor });
  const wall = (performance.now() - t0) / 1000;
  const self = process.cpuUsage(self0);
  const cpu = Object.fromEntries(Object.entries(who).map(([k, p]) => [k, Math.round(((cpuSeconds(p.child.pid) - before[k]) / wall) * 100)]));
  cpu.loadgen = Math.round(((self.user + self.system) / 1e6 / wall) * 100);
  // Everything else on the machine (other jobs): the figures mean little when this is high.
  const ours = Object.entries(cpu).reduce((sum, [, v]) => sum + v, 0);
  cpu.other = Math.max(0, Math.round(((machineBusy() - machine0) / wall) * 100 - ours));
  const row: Row = { label, reqPerSec: raw.requests.average, p50: raw.latency.p50, p99: raw.latency.p99, non2xx: raw.non2xx, errors: raw.errors + raw.timeouts, cpu, raw };
  log(`${label}: ${Math.round(row.reqPerSec)} req/s, p50 ${row.p50} ms, p99 ${row.p99} ms, non-2xx ${row.non2xx}, errors ${row.errors}, CPU % of a core ${JSON.stringify(cpu)}`);
  return row;
}

// ------------------------------------------------------------------------------------ main

const env = testEnv(); // DATABASE_URL + NATS from the environment, a schema per service, a NATS prefix, a temp dir
const logs = path.join(env.dataDir, 'logs');

async function main(): Promise<void> {
  fs.mkdirSync(logs, { recursive: true });
  const [permissionsPort, registryPort, gatewayPort] = [await freePort(), await freePort(), await freePort()];
  const permissionsUrl = `http://127.0.0.1:${permissionsPort}`;
  const registryUrl = `http://127.0.0.1:${registryPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const clean: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DOCKYARD_') && k !== 'NODE_OPTIONS'));
  const base = { ...clean, ...env.env, DOCKYARD_LOG_LEVEL: 'info', DOCKYARD_HOST: '127.0.0.1' };
  log(`machine: ${os.availableParallelism()} cores (${os.cpus()[0]?.model}), node ${process.version}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  log(`PostgreSQL ${env.env.DATABASE_URL.replace(/\/\/[^@]*@/, '//')} schemas ${env.id}_*, NATS prefix ${env.env.DOCKYARD_NATS_PREFIX}`);

  const permissions = start('permissions', path.join(REPO_ROOT, 'services/permissions'), { ...env.serviceEnv('permissions', { ...base, DOCKYARD_PORT: String(permissionsPort), DOCKYARD_SEED_TEST_USERS: '1' }) }, path.join(logs, 'permissions.log'));
  await waitReady(permissions, `${permissionsUrl}/readyz`);

  // A tiny app repository for the cloning submits (d).
  const repoDir = path.join(env.dataDir, 'app-repo');
  fs.mkdirSync(path.join(repoDir, 'ecr-meta'), { recursive: true });
  fs.writeFileSync(path.join(repoDir, 'Dockerfile'), 'FROM dockyard/busybox:latest\n');
  fs.writeFileSync(path.join(repoDir, 'ecr-meta/ecr-science-description.md'), '# bench\n');
  const gitEnv = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@example.org', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@example.org' };
  for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['commit', '-qm', 'bench'], ['tag', 'v1']]) execFileSync('git', args, { cwd: repoDir, env: gitEnv });

  const registryEnv = (skipClone: boolean) =>
    env.serviceEnv('registry', { ...base, DOCKYARD_PORT: String(registryPort), DOCKYARD_GIT_ALLOW: 'file://', DOCKYARD_REGISTRY_SKIP_CLONE: skipClone ? '1' : '0' });
  let registry = start('registry', path.join(REPO_ROOT, 'services/registry'), registryEnv(false), path.join(logs, 'registry.log'));
  await waitReady(registry, `${registryUrl}/readyz`);

  const gatewayEnv: NodeJS.ProcessEnv = { ...base, DOCKYARD_PORT: String(gatewayPort), DOCKYARD_RATE_LIMIT: '1000000000' };
  for (const s of ['PERMISSIONS', 'REGISTRY', 'BUILD', 'EXECUTION', 'SOURCE_CACHE', 'PROCESS']) gatewayEnv[`DOCKYARD_${s}_URL`] = s === 'PERMISSIONS' ? permissionsUrl : registryUrl;
  const gateway = start('gateway', path.join(REPO_ROOT, 'gateway'), gatewayEnv, path.join(logs, 'gateway.log'));
  await waitReady(gateway, `${gatewayUrl}/readyz`);
  log(`permissions ${permissionsUrl}, registry ${registryUrl}, gateway ${gatewayUrl} ready`);

  // The app every GET reads, submitted through the gateway (a real clone).
  const doc = (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ description: 'benchmark app', source: { url: `file://${repoDir}`, branch: 'main', architectures: ['linux/amd64'] }, inputs: [{ id: 'speed', type: 'int' }], metadata: { x: 1 }, ...extra });
  const first = await fetch(`${gatewayUrl}/apps/bench/app/1.0`, { method: 'POST', headers: { authorization: AUTH, 'content-type': 'application/json' }, body: doc() });
  if (first.status !== 200) throw new Error(`submit through the gateway answered ${first.status}: ${await first.text()}`);
  const check = await fetch(`${gatewayUrl}/apps/bench/app/1.0`, { headers: { authorization: AUTH } });
  if (check.status !== 200) throw new Error(`GET through the gateway answered ${check.status}`);
  const denied = await fetch(`${gatewayUrl}/apps/bench/app/1.0`);
  if (denied.status !== 401) throw new Error(`anonymous GET answered ${denied.status}, expected 401 (the app is private)`);
  const sign = identitySigner(env.env.DOCKYARD_INTERNAL_SECRET, 3_600_000);
  const identity = { id: 'bench', login: 'testuser', admin: false, approved: true, groups: [], roles: [] };

  const rows: Row[] = [];
  const all = () => ({ gateway, registry, permissions });
  rows.push(await measure('(a) GET app, registry direct', { url: `${registryUrl}/apps/bench/app/1.0`, headers: { [IDENTITY_HEADER]: sign(identity) }, connections: CONNECTIONS }, all()));
  rows.push(await measure('(b) GET app, through the gateway', { url: `${gatewayUrl}/apps/bench/app/1.0`, headers: { authorization: AUTH }, connections: CONNECTIONS }, all()));

  let n = 0;
  const submits = (repoName: string, connections: number): autocannon.Options => ({
    url: gatewayUrl,
    connections,
    requests: [{ method: 'POST', headers: { authorization: AUTH, 'content-type': 'application/json' }, body: doc(), setupRequest: (req) => ({ ...req, path: `/apps/bench/${repoName}/${++n}` }) }],
  });
  // (c) the submit path without git: the registry restarted with cloning off (benchmark-only switch).
  await stop(registry);
  registry = start('registry', path.join(REPO_ROOT, 'services/registry'), registryEnv(true), path.join(logs, 'registry-noclone.log'));
  await waitReady(registry, `${registryUrl}/readyz`);
  rows.push(await measure('(c) POST submit, no clone, through the gateway', submits('nc', SUBMIT_CONNECTIONS), all()));
  await stop(registry);
  registry = start('registry', path.join(REPO_ROOT, 'services/registry'), registryEnv(false), path.join(logs, 'registry-clone.log'));
  await waitReady(registry, `${registryUrl}/readyz`);
  rows.push(await measure('(d) POST submit, clone of a tiny local repo, through the gateway', submits('git', CLONE_CONNECTIONS), all(), 2));

  const target = rows[1];
  const met = target.reqPerSec >= 3000 && target.p99 <= 25;
  console.log('\n| run | req/s | p50 ms | p99 ms | non-2xx | errors | CPU % of a core (gateway / registry / permissions / load generator / other jobs) |');
  console.log('|---|---:|---:|---:|---:|---:|---|');
  for (const r of rows) console.log(`| ${r.label} | ${Math.round(r.reqPerSec)} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${r.cpu.gateway} / ${r.cpu.registry} / ${r.cpu.permissions} / ${r.cpu.loadgen} / ${r.cpu.other} |`);
  console.log(`\ntarget (b) >= 3000 req/s with p99 <= 25 ms: ${met ? 'MET' : 'NOT MET'}; gateway/direct req/s ${(rows[1].reqPerSec / rows[0].reqPerSec).toFixed(2)}`);
  const out = path.join(REPO_ROOT, 'bench/results');
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, `registry-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ settings: { DURATION, CONNECTIONS, SUBMIT_CONNECTIONS, CLONE_CONNECTIONS, WARMUP }, loadavg: os.loadavg(), rows }, null, 2));
  log(`raw results in ${path.relative(REPO_ROOT, file)}`);
  if (rows.some((r) => r.non2xx || r.errors)) {
    log('INVALID RUN: non-2xx answers or errors (autocannon leaves them out of the latencies)');
    process.exitCode = 2;
  }
}

async function cleanup(): Promise<void> {
  await Promise.all([...procs].map(stop));
  // The services' logs outlive the temp dir (bench/results is git-ignored).
  const kept = path.join(REPO_ROOT, 'bench/results', `registry-logs-${env.id}`);
  fs.mkdirSync(path.dirname(kept), { recursive: true });
  fs.cpSync(logs, kept, { recursive: true });
  log(`service logs in ${path.relative(REPO_ROOT, kept)}`);
  try {
    const nc = await connectNats(env.env.DOCKYARD_NATS_URL, 'bench-cleanup');
    const stream = `${env.env.DOCKYARD_NATS_PREFIX.replace(/\./g, '_').toUpperCase()}EVENTS`;
    await nc.request(`$JS.API.STREAM.DELETE.${stream}`, undefined, { timeout: 3000 }).catch(() => undefined);
    await nc.drain();
  } catch {}
  await env.cleanup();
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void cleanup().finally(() => process.exit(130)));
try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanup();
}
