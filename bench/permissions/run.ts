/**
 * Permissions benchmark: what a permission decision costs the services that ask for one, and how
 * many registry tokens the token service issues.
 *
 *   eval "$(deploy/local/infra.sh env)"            # PostgreSQL and NATS (DATABASE_URL, DOCKYARD_NATS_URL)
 *   node --import tsx bench/permissions/run.ts     # from the repository root
 *
 * Starts its own permissions service (`node --import tsx src/server.ts`, PostgreSQL in a schema of
 * its own, seeded test users) and gateway on free ports, with its own NATS prefix and internal
 * secret, seeds 200 repositories in one namespace with a mix of user, group, namespace and
 * AllUsers grants, then measures:
 *   (a) permissions.check over NATS, uncached: BENCH_CONCURRENCY requests in flight from this
 *       process, cycling through 1,000 distinct (identity, action, repository) questions
 *   (b) the same questions through kit's PermissionsClient (the cache every service uses, 5 s TTL),
 *       every question asked once before the measurement (a running service's cache)
 *   (c) as (b) with one grant change per second over HTTP (each drops every cached decision)
 *   (d) GET /auth/registry/token on the service itself (autocannon, internal identity header)
 *   (e) the same through the gateway with HTTP Basic `anyone:testuser_token` (what `docker login`
 *       stored; credential resolution cached by the gateway)
 * and prints per target ops/s, p50/p99 latency in ms, errors, the share of (b)/(c) that reached
 * the service, and the CPU used by the service, the gateway, this process, PostgreSQL (all of its
 * processes: other users' queries count too) and everything else.
 * Raw results: bench/results/permissions-<timestamp>.json.
 *
 * Knobs: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 2), BENCH_CONCURRENCY (default 50,
 * for a-c), BENCH_CONNECTIONS (default 50, for d-e), BENCH_ONLY (e.g. `a,d`: only those targets), BENCH_QUIET_WAIT (s, default 300: before each
 * measurement, wait at most this long for other processes to leave the CPU alone), DATABASE_URL,
 * DOCKYARD_NATS_URL.
 */
import autocannon from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { IDENTITY_HEADER, PermissionsClient, Subjects, connectNats, identitySigner, request, type Identity } from '@dockyard/kit';
import { testEnv, freePort } from '@dockyard/kit/testing';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const knob = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const DURATION = knob('BENCH_DURATION', 10);
const WARMUP = knob('BENCH_WARMUP', 2);
const CONCURRENCY = Math.round(knob('BENCH_CONCURRENCY', 50));
const CONNECTIONS = Math.round(knob('BENCH_CONNECTIONS', 50));
const QUIET_WAIT = knob('BENCH_QUIET_WAIT', 300);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'a,b,c,d,e').split(',').map((t) => t.trim()));
const SERVICE = 'dockyard-registry';
const REPOSITORIES = 200;

const log = (msg: string) => process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ------------------------------------------------------------------------------------ processes

interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  exit: Promise<void>;
}
const procs: Proc[] = [];

function start(name: string, cwd: string, env: NodeJS.ProcessEnv, logFile: string): Proc {
  const fd = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd, env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const proc = { name, child, logFile, exit: new Promise<void>((resolve) => child.once('exit', () => resolve())) };
  procs.push(proc);
  return proc;
}

async function stop(proc: Proc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
  await proc.exit;
  clearTimeout(timer);
}

const tail = (file: string) => fs.readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');

async function waitHealthy(proc: Proc, url: string): Promise<void> {
  for (const deadline = Date.now() + 120_000; ; await sleep(250)) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited; last lines of ${proc.logFile}:\n${tail(proc.logFile)}`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} not healthy in 120 s:\n${tail(proc.logFile)}`);
  }
}


// ------------------------------------------------------------------------------------ CPU accounting

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** User+system CPU seconds of a process and its children still alive (gateway cluster workers). */
function treeCpu(pid: number | undefined): number {
  if (!pid) return 0;
  const table = new Map<number, { ppid: number; cpu: number }>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(entry), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK });
    } catch {
      /* gone */
    }
  }
  let sum = 0;
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    sum += table.get(p)?.cpu ?? 0;
    for (const [child, info] of table) if (info.ppid === p) queue.push(child);
  }
  return sum;
}

/** CPU seconds of every PostgreSQL process (the service's queries run there; other users' too). */
function postgresCpu(): number {
  let sum = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (!stat.includes('(postgres)')) continue;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      sum += (Number(f[11]) + Number(f[12])) / CLK_TCK;
    } catch {
      /* gone */
    }
  }
  return sum;
}

/** Busy CPU seconds of the whole machine, from /proc/stat. */
function machineBusy(): number {
  const [user, nice, system] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system) / CLK_TCK;
}

interface Cpu {
  service: number;
  gateway: number;
  loadgen: number;
  /** Every PostgreSQL process, this benchmark's queries and anyone else's. */
  postgres: number;
  other: number;
}

/** Runs `work` and reports the CPU (percent of one core) each party used meanwhile. */
async function withCpu<T>(work: () => Promise<T>, pids: { service?: number; gateway?: number }): Promise<{ result: T; cpu: Cpu }> {
  const t0 = performance.now();
  const m0 = machineBusy();
  const s0 = treeCpu(pids.service);
  const g0 = treeCpu(pids.gateway);
  const p0 = postgresCpu();
  const l0 = process.cpuUsage();
  const result = await work();
  const wall = (performance.now() - t0) / 1000;
  const service = treeCpu(pids.service) - s0;
  const gateway = treeCpu(pids.gateway) - g0;
  const postgres = postgresCpu() - p0;
  const l = process.cpuUsage(l0);
  const loadgen = (l.user + l.system) / 1e6;
  const pct = (x: number) => Math.round((x / wall) * 100);
  const other = Math.max(0, machineBusy() - m0 - service - gateway - loadgen - postgres);
  return { result, cpu: { service: pct(service), gateway: pct(gateway), loadgen: pct(loadgen), postgres: pct(postgres), other: pct(other) } };
}

/**
 * Waits (BENCH_QUIET_WAIT s at most) until processes other than ours use at most 15% of a core: on
 * a shared 2-core machine a test suite next to the benchmark halves its figures. A run that starts
 * anyway shows it in its "other CPU" column.
 */
async function waitQuiet(pids: { service?: number; gateway?: number }): Promise<void> {
  const deadline = Date.now() + QUIET_WAIT * 1000;
  for (let told = false; ; told = true) {
    const { cpu } = await withCpu(() => sleep(1000), pids);
    if (cpu.other <= 15) return;
    if (Date.now() > deadline) {
      log(`  the machine is still busy (others use ${cpu.other}% of a core); measuring anyway`);
      return;
    }
    if (!told) log(`  waiting for the machine to be quiet (others use ${cpu.other}% of a core; at most ${QUIET_WAIT} s)`);
  }
}

// ------------------------------------------------------------------------------------ load

interface Figures {
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  ops: number;
}

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/** `concurrency` loops calling `op` back to back for `seconds`; latencies in ms. */
async function loops(op: (i: number) => Promise<unknown>, seconds: number): Promise<Figures> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const until = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let n = 1; performance.now() < until; n++) {
        const s = performance.now();
        try {
          await op(next++);
          latencies.push(performance.now() - s);
        } catch {
          errors++;
        }
        // A cache hit resolves without I/O: without this, the loops would starve timers and
        // sockets (NATS replies, the grant changes of (c)) for the whole run.
        if (n % 32 === 0) await new Promise((r) => setImmediate(r));
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return { opsPerSec: latencies.length / wall, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors, ops: latencies.length };
}

function cannon(url: string, headers: Record<string, string>, seconds: number): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon({ url, headers, connections: CONNECTIONS, pipelining: 1, duration: seconds, timeout: 10 }, (err, result) => (err ? reject(err) : resolve(result)));
  });
}
const fromCannon = (r: autocannon.Result): Figures => ({
  opsPerSec: r.requests.average,
  p50: r.latency.p50,
  p99: r.latency.p99,
  errors: r.errors + r.timeouts + r.non2xx,
  ops: r.requests.total,
});

// ------------------------------------------------------------------------------------ main

const env = testEnv();
const subjects = new Subjects(env.env.DOCKYARD_NATS_PREFIX);
const tmp = env.dataDir;
const results: Record<string, unknown> = { startedAt: new Date().toISOString(), duration: DURATION, warmup: WARMUP, concurrency: CONCURRENCY, connections: CONNECTIONS };
let nc: Awaited<ReturnType<typeof connectNats>> | null = null;

async function cleanup(): Promise<void> {
  await Promise.all(procs.map(stop));
  if (nc) {
    // The EVENTS stream the service made under this run's prefix.
    await nc.request(`$JS.API.STREAM.DELETE.${subjects.stream('EVENTS')}`, undefined, { timeout: 3000 }).catch(() => undefined);
    await nc.drain();
  }
  await env.cleanup();
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping everything this benchmark started`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  const servicePort = await freePort();
  const gatewayPort = await freePort();
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DOCKYARD_') && k !== 'NODE_OPTIONS') base[k] = v;
  const serviceEnv = { ...base, ...env.serviceEnv('permissions'), DOCKYARD_PORT: String(servicePort), DOCKYARD_SEED_TEST_USERS: '1', DOCKYARD_LOG_LEVEL: 'warn' };
  const service = start('permissions', path.join(REPO_ROOT, 'services/permissions'), serviceEnv, path.join(tmp, 'permissions.log'));
  await waitHealthy(service, `http://127.0.0.1:${servicePort}/healthz`);
  const upstreams = Object.fromEntries(
    ['PERMISSIONS', 'REGISTRY', 'BUILD', 'EXECUTION', 'SOURCE_CACHE', 'PROCESS'].map((s) => [`DOCKYARD_${s}_URL`, `http://127.0.0.1:${servicePort}`]),
  );
  const gatewayEnv = { ...base, ...env.env, ...upstreams, DOCKYARD_PORT: String(gatewayPort), DOCKYARD_HOST: '127.0.0.1', DOCKYARD_RATE_LIMIT: '0', DOCKYARD_LOG_LEVEL: 'warn' };
  const gateway = start('gateway', path.join(REPO_ROOT, 'gateway'), gatewayEnv, path.join(tmp, 'gateway.log'));
  await waitHealthy(gateway, `http://127.0.0.1:${gatewayPort}/healthz`);
  const pids = { service: service.child.pid, gateway: gateway.child.pid };

  nc = await connectNats(env.env.DOCKYARD_NATS_URL, 'bench-permissions');
  const sign = identitySigner(env.env.DOCKYARD_INTERNAL_SECRET, 3_600_000);
  const person = (login: string, groups: string[] = []): Identity => ({ id: `u-${login}`, login, admin: false, approved: true, groups, roles: [] });
  const owner = person('testuser');
  const serviceUrl = `http://127.0.0.1:${servicePort}`;
  const put = async (path_: string, body: object) => {
    const res = await fetch(`${serviceUrl}/permissions/${path_}`, { method: 'PUT', headers: { [IDENTITY_HEADER]: sign(owner), 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`PUT /permissions/${path_}: ${res.status} ${await res.text()}`);
  };

  // Seed: testuser owns namespace `bench` and its 200 repositories; some are public, a group may
  // write every tenth, user u3 writes the whole namespace through a namespace grant.
  log(`seeding ${REPOSITORIES} repositories`);
  await request(nc, subjects.of('permissions.own'), { resource: { type: 'namespace', name: 'bench' }, owner: 'testuser' });
  for (let i = 0; i < REPOSITORIES; i++) {
    await request(nc, subjects.of('permissions.own'), { resource: { type: 'repository', name: `bench/r${i}` }, owner: 'testuser' });
    if (i % 4 === 0) await put(`bench/r${i}`, { operation: 'add', granteeType: 'GROUP', grantee: 'AllUsers', permission: 'READ' });
    if (i % 10 === 0) await put(`bench/r${i}`, { operation: 'add', granteeType: 'GROUP', grantee: 'devs', permission: 'WRITE' });
  }
  await put('bench', { operation: 'add', granteeType: 'USER', grantee: 'u3', permission: 'WRITE' });

  // 1,000 distinct questions: 20 identities (some in `devs`, one anonymous) x 3 actions x repositories.
  const identities = Array.from({ length: 20 }, (_, i) => (i === 0 ? { ...person('x'), id: null, login: null } : person(`u${i}`, i % 3 === 0 ? ['devs'] : [])));
  const actions = ['READ', 'WRITE', 'READ_ACP'] as const;
  const questions = Array.from({ length: 1000 }, (_, i) => ({
    identity: identities[i % identities.length],
    action: actions[Math.floor(i / identities.length) % actions.length],
    resource: { type: 'repository' as const, name: `bench/r${(i * 7) % REPOSITORIES}` },
  }));
  let allowedCount = 0;
  for (const q of questions) {
    const body = { identity: { login: q.identity.login, admin: false, groups: q.identity.groups }, action: q.action, resource: q.resource };
    if ((await request<object, { allowed: boolean }>(nc, subjects.of('permissions.check'), body, 30_000)).allowed) allowedCount++;
  }
  log(`questions: ${questions.length}, of which allowed: ${allowedCount}`);

  // Every real permissions.check reaches this plain subscriber too (the service answers in a queue group).
  let checksSeen = 0;
  const counter = nc.subscribe(subjects.of('permissions.check'));
  void (async () => {
    for await (const _ of counter) checksSeen++;
  })();

  const uncached = (i: number) => {
    const q = questions[i % questions.length];
    return request(nc!, subjects.of('permissions.check'), { identity: { login: q.identity.login, admin: false, groups: q.identity.groups }, action: q.action, resource: q.resource });
  };
  const client = new PermissionsClient(nc, subjects);
  const cached = (i: number) => {
    const q = questions[i % questions.length];
    return client.allowed(q.identity, q.action, q.resource);
  };

  const rows: { key: string; label: string; figures: Figures; cpu: Cpu; reachedService?: number }[] = [];
  async function measureLoops(key: string, label: string, op: (i: number) => Promise<unknown>, during?: () => () => void) {
    if (!ONLY.has(key)) return;
    log(`${label}: warm-up ${WARMUP} s, then ${DURATION} s`);
    await loops(op, WARMUP);
    await waitQuiet(pids);
    // The cache starts full (every question asked once), as in a service that has been running.
    client.invalidate();
    for (let i = 0; i < questions.length; i += CONCURRENCY) await Promise.all(questions.slice(i, i + CONCURRENCY).map((_, j) => op(i + j)));
    const stopSide = during?.();
    const seen0 = checksSeen;
    const { result, cpu } = await withCpu(() => loops(op, DURATION), pids);
    stopSide?.();
    await nc!.flush();
    rows.push({ key, label, figures: result, cpu, reachedService: (checksSeen - seen0) / result.ops });
  }
  async function measureHttp(key: string, label: string, url: string, headers: Record<string, string>) {
    if (!ONLY.has(key)) return;
    const check = await fetch(url, { headers });
    const body = (await check.json()) as { token?: string };
    if (!check.ok || !body.token) throw new Error(`${label}: ${check.status} ${JSON.stringify(body)}`);
    log(`${label}: warm-up ${WARMUP} s, then ${DURATION} s`);
    await cannon(url, headers, WARMUP);
    await waitQuiet(pids);
    const { result, cpu } = await withCpu(() => cannon(url, headers, DURATION), pids);
    rows.push({ key, label, figures: fromCannon(result), cpu });
    results[`raw_${key}`] = result;
  }

  await measureLoops('a', '(a) permissions.check over NATS, uncached', uncached);
  await measureLoops('b', '(b) PermissionsClient, cached (5 s TTL)', cached);
  let changes = 0;
  await measureLoops('c', '(c) PermissionsClient, one grant change/s', cached, () => {
    const timer = setInterval(() => {
      changes++;
      void put('bench/r1', { operation: changes % 2 ? 'add' : 'delete', granteeType: 'USER', grantee: 'churn', permission: 'READ' });
    }, 1000);
    return () => clearInterval(timer);
  });
  const tokenPath = `/auth/registry/token?service=${SERVICE}&scope=${encodeURIComponent('repository:bench/r1:pull,push')}`;
  await measureHttp('d', '(d) registry token, service directly', `${serviceUrl}${tokenPath}`, { [IDENTITY_HEADER]: sign(owner) });
  await measureHttp('e', '(e) registry token through the gateway (Basic)', `http://127.0.0.1:${gatewayPort}${tokenPath}`, {
    authorization: `Basic ${Buffer.from('anyone:testuser_token').toString('base64')}`,
  });

  const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
  const lines = [
    `| target | ops/s | p50 ms | p99 ms | errors | reached service | service CPU | gateway CPU | loadgen CPU | postgres CPU | other CPU |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
    ...rows.map(
      (r) =>
        `| ${r.label} | ${fmt(r.figures.opsPerSec)} | ${fmt(r.figures.p50, 3)} | ${fmt(r.figures.p99, 3)} | ${r.figures.errors} | ${r.reachedService === undefined ? '-' : `${fmt(r.reachedService * 100, 1)}%`} | ${r.cpu.service}% | ${r.cpu.gateway}% | ${r.cpu.loadgen}% | ${r.cpu.postgres}% | ${r.cpu.other}% |`,
    ),
  ];
  const by = Object.fromEntries(rows.map((r) => [r.key, r.figures.opsPerSec]));
  const ratios = [
    `cached / uncached checks: ${fmt(by.b / by.a, 1)}x`,
    `cached with a grant change every second / uncached: ${fmt(by.c / by.a, 1)}x`,
    `token through the gateway / direct: ${fmt(by.e / by.d, 2)}x`,
  ];
  process.stdout.write(`\n${os.cpus().length} cores, Node ${process.version}, PostgreSQL via DATABASE_URL, ${DURATION} s per target\n\n${lines.join('\n')}\n\n${ratios.join('\n')}\n`);
  Object.assign(results, { rows, ratios, grantChanges: changes, cores: os.cpus().length, node: process.version });
  const out = path.join(REPO_ROOT, 'bench/results', `permissions-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(results, null, 2));
  log(`raw results: ${path.relative(REPO_ROOT, out)}`);
} catch (err) {
  log(`failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
