/**
 * Load benchmark: simulated users doing the four APIs' flows through the gateway of a whole stack.
 *
 *   eval "$(deploy/local/infra.sh env)" && node --import tsx bench/load/run.ts [--duration 300] [--users 50]
 *   node --import tsx bench/load/run.ts --url http://127.0.0.1:8080 --admin-token dky_... [--run-dir .run]
 *   ... --database postgres   (the stack on the infra PostgreSQL, a database of its own, dropped after)
 *
 * Without --url it starts the whole platform as kit's startStack does (deploy/local/stack.sh: every
 * service a process, embedded PGlite (or --database postgres), its own ports, run dir and NATS prefix; the ECR registry with
 * DOCKYARD_REGISTRY_SKIP_CLONE=1 so a submit stores the app without cloning, DOCKYARD_GIT_ALLOW=127.0.0.1
 * for the local git daemon Cachito clones from) and stops it at the end. With --url it drives a
 * running stack (give its admin token; peak memory needs its run dir's pid files, default .run).
 *
 * Set-up: a local git daemon with one small repository; one user per simulated user (`load-u<i>`,
 * approved, created by the admin through POST /auth/users, with an API token from POST /auth/tokens),
 * so the per-identity rate limit applies as in production. Then each user loops (user i starting with
 * flow i mod 4, so all four APIs are loaded from the start), until --duration
 * seconds have passed (a request in flight then finishes; a wait for a build/job/request is left):
 *   ECR      POST /apps/<user>/app<n>/1.0 (submit, no clone), GET it, GET /apps?limit=20,
 *            GET /permissions/<user>/app<n>
 *   Kabuto   POST /image (the same Dockerfile each time: a cached build), GET /image/build/<id> until
 *            done; POST /pipeline, POST /pipeline/<id>/job (multipart), POST .../submit,
 *            GET .../job/<id> until done, GET .../job/<id>?result (the zip)
 *   Cachito  POST /api/v1/requests (the local repository, no package managers), GET /api/v1/requests/<id>
 *            until complete
 *   REE      GET /api/image/list, GET /api/process (the caller's processes and their status)
 * Status polls wait 250 ms between requests. Printed: per endpoint group requests, req/s, p50, p99
 * (ms), errors (non-2xx where 2xx was expected, network errors) and flows that ended badly (a build
 * or job that did not succeed); the error rate (target 0); the peak memory (VmHWM from
 * /proc/<pid>/status) of every stack process, summed over a process and its children (the gateway's
 * cluster workers). Raw figures: bench/results/load-<timestamp>.json. Exit status 2 when any error.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { gitDaemon, infra, startStack } from '@dockyard/kit/testing';

const run = promisify(execFile);
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '300' },
    users: { type: 'string', default: '50' },
    url: { type: 'string' },
    'admin-token': { type: 'string' },
    'run-dir': { type: 'string' },
    database: { type: 'string', default: 'pglite' },
  },
});
const DURATION_S = Number(args.duration);
const USERS = Number(args.users);
if (!(DURATION_S > 0) || !(USERS > 0)) throw new Error('--duration and --users must be positive numbers');
if (!['pglite', 'postgres'].includes(args.database!)) throw new Error('--database is pglite (embedded, the default) or postgres (infra.sh PostgreSQL)');
const log = (msg: string) => process.stdout.write(`[load ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ------------------------------------------------------------------------------------ measuring

interface Group {
  latencies: number[];
  errors: number;
  examples: string[];
}
const groups = new Map<string, Group>();
const flowFailures = new Map<string, number>();
let measuring = false;
let stopAt = Number.POSITIVE_INFINITY;
const stopping = () => Date.now() >= stopAt;

function group(name: string): Group {
  let g = groups.get(name);
  if (!g) groups.set(name, (g = { latencies: [], errors: 0, examples: [] }));
  return g;
}

/** One request, timed and counted under `name`; throws on a network error or an unexpected status. */
async function call(name: string, base: string, token: string, pathname: string, init: RequestInit = {}, expect: number[] = [200, 201]): Promise<Response> {
  const started = performance.now();
  let res: Response;
  try {
    res = await fetch(`${base}${pathname}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) }, signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    if (measuring) {
      const g = group(name);
      g.errors++;
      if (g.examples.length < 3) g.examples.push(String(err));
    }
    throw err;
  }
  const body = Buffer.from(await res.arrayBuffer());
  const ms = performance.now() - started;
  const ok = expect.includes(res.status);
  if (measuring) {
    const g = group(name);
    g.latencies.push(ms);
    if (!ok) {
      g.errors++;
      if (g.examples.length < 3) g.examples.push(`${init.method ?? 'GET'} ${pathname} -> ${res.status} ${body.toString('utf8').slice(0, 200)}`);
    }
  }
  if (!ok) throw new Error(`${name}: ${res.status}`);
  return new Response(body.length ? body : null, { status: res.status, headers: res.headers });
}

function flowFailed(name: string, detail: string) {
  if (!measuring) return;
  flowFailures.set(name, (flowFailures.get(name) ?? 0) + 1);
  const g = group(name);
  if (g.examples.length < 3) g.examples.push(detail);
}

/** Polls `check` every 250 ms until it returns a value; undefined when the run ends first. */
async function poll<T>(check: () => Promise<T | undefined>): Promise<T | undefined> {
  while (!stopping()) {
    const value = await check();
    if (value !== undefined) return value;
    await sleep(250);
  }
  return undefined;
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);

// ------------------------------------------------------------------------------------ memory

/** VmHWM (peak resident set, kB) of a process and each of its descendants. */
function peakKb(rootPid: number): { kb: number; processes: number } {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  let kb = 0;
  let processes = 0;
  const visit = (pid: number) => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) {
        kb += Number(m[1]);
        processes++;
      }
    } catch {
      return;
    }
    for (const c of children.get(pid) ?? []) visit(c);
  };
  visit(rootPid);
  return { kb, processes };
}

function stackPids(runDir: string): Record<string, number> {
  const dir = path.join(runDir, 'pids');
  const out: Record<string, number> = {};
  if (!fs.existsSync(dir)) return out;
  for (const f of fs.readdirSync(dir)) {
    const m = /^stack-(.+)\.pid$/.exec(f);
    // stack.sh's pid files: the pid, then the program's name.
    if (m) out[m[1]] = Number(fs.readFileSync(path.join(dir, f), 'utf8').split('\n')[0]);
  }
  return out;
}

// ------------------------------------------------------------------------------------ flows

interface User {
  login: string;
  token: string;
  n: number;
}

const DOCKERFILE = 'FROM dockyard/busybox:latest\nRUN echo load-benchmark > /stamp\n';

async function ecr(base: string, u: User, gitUrl: string) {
  const app = `app${u.n}`;
  const submission = { description: 'load benchmark', source: { url: gitUrl, branch: 'main', architectures: ['linux/amd64'] } };
  await call('ECR submit', base, u.token, `/apps/${u.login}/${app}/1.0`, { method: 'POST', body: JSON.stringify(submission), headers: { 'content-type': 'application/json' } });
  await call('ECR get app', base, u.token, `/apps/${u.login}/${app}/1.0`);
  await call('ECR list apps', base, u.token, '/apps?limit=20');
  await call('ECR permissions', base, u.token, `/permissions/${u.login}/${app}`);
}

async function kabuto(base: string, u: User) {
  const res = await call('Kabuto image build', base, u.token, '/image', { method: 'POST', body: new URLSearchParams({ name: 'load', dockerfile: DOCKERFILE }) });
  const { build_id } = (await res.json()) as { build_id: string };
  const built = await poll(async () => {
    const s = (await (await call('Kabuto build status', base, u.token, `/image/build/${build_id}`)).json()) as { state: string; id?: string };
    return s.state === 'PENDING' ? undefined : s;
  });
  if (!built) return;
  if (built.state !== 'SUCCESS') return flowFailed('Kabuto build status', `build ${build_id} ended ${built.state}`);
  const { id: pipeline } = (await (await call('Kabuto pipeline+job', base, u.token, '/pipeline', { method: 'POST', body: new URLSearchParams({ name: `load${u.n}` }) })).json()) as { id: string };
  const form = new FormData();
  form.set('command', 'cat /stamp > /outbox/out.txt');
  form.set('image_id', String(built.id));
  const { id: job } = (await (await call('Kabuto pipeline+job', base, u.token, `/pipeline/${pipeline}/job`, { method: 'POST', body: form })).json()) as { id: string };
  await call('Kabuto pipeline+job', base, u.token, `/pipeline/${pipeline}/submit`, { method: 'POST' });
  const state = await poll(async () => {
    const body = (await (await call('Kabuto job status', base, u.token, `/pipeline/${pipeline}/job/${job}`)).json()) as Record<string, { state: string }>;
    const s = body[String(job)]?.state;
    return ['done', 'failed', 'killed'].includes(s) ? s : undefined;
  });
  if (!state) return;
  if (state !== 'done') return flowFailed('Kabuto job status', `job ${job} ended ${state}`);
  await call('Kabuto result', base, u.token, `/pipeline/${pipeline}/job/${job}?result`);
}

async function cachito(base: string, u: User, gitUrl: string, ref: string) {
  const res = await call('Cachito request', base, u.token, '/api/v1/requests', { method: 'POST', body: JSON.stringify({ repo: gitUrl, ref, pkg_managers: [] }), headers: { 'content-type': 'application/json' } });
  const { id } = (await res.json()) as { id: number };
  const state = await poll(async () => {
    const r = (await (await call('Cachito status', base, u.token, `/api/v1/requests/${id}`)).json()) as { state: string };
    return r.state === 'in_progress' ? undefined : r.state;
  });
  if (state && state !== 'complete') flowFailed('Cachito status', `request ${id} ended ${state}`);
}

async function ree(base: string, u: User) {
  await call('REE images', base, u.token, '/api/image/list');
  await call('REE processes', base, u.token, '/api/process');
}

async function simulate(base: string, u: User, index: number, gitUrl: string, ref: string, iterations: { n: number }) {
  const flows = [() => ecr(base, u, gitUrl), () => kabuto(base, u), () => cachito(base, u, gitUrl, ref), () => ree(base, u)];
  // User i starts with flow i mod 4, so every API is under load from the first second (a Kabuto
  // flow waits for a build and a job, which takes long on a busy machine).
  const order = flows.map((_, k) => flows[(index + k) % flows.length]);
  while (!stopping()) {
    u.n++;
    // A failed call is counted where it happened; the user goes on with the next flow.
    let ran = 0;
    for (const flow of order) {
      if (stopping()) break;
      await flow().catch(() => undefined);
      ran++;
    }
    // An iteration whose last flow was cut short by the end of the run does not count.
    if (ran === 4 && !stopping()) iterations.n++;
  }
}

// ------------------------------------------------------------------------------------ main

interface OwnStack {
  base: string;
  adminToken: string;
  dir: string;
  stop(): Promise<void>;
}

let createdDatabase: { admin: string; name: string } | null = null;

/** A fresh PostgreSQL database on infra.sh's server for this run; its URL. */
async function createDatabase(tmp: string): Promise<string> {
  const admin = infra().databaseUrl;
  const name = `dockyard_load_${path.basename(tmp).replace(/[^a-z0-9]/gi, '').toLowerCase()}`;
  await run('psql', [admin, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${name}`]);
  createdDatabase = { admin, name };
  log(`database ${name} on the infra PostgreSQL`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

async function dropDatabase(): Promise<void> {
  if (!createdDatabase) return;
  await run('psql', [createdDatabase.admin, '-qc', `DROP DATABASE IF EXISTS ${createdDatabase.name} WITH (FORCE)`]).catch(() => undefined);
  createdDatabase = null;
}

/** The whole stack as `make up` runs it, on its own ports and prefix (kit startStack). */
const startOwnStack = (env: NodeJS.ProcessEnv): Promise<OwnStack> => startStack(env);

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dockyard-load-'));
  let stack: OwnStack | undefined;
  let daemon: Awaited<ReturnType<typeof gitDaemon>> | undefined;
  const cleanup = async () => {
    daemon?.stop();
    if (stack) {
      log('stopping the stack');
      await stack.stop();
    }
    // Images the Kabuto flow built (the build service names them <registry>/kabuto/<owner>/<name>).
    // By image id: a rebuilt tag leaves its older image untagged (<none>), which no name removes.
    const { stdout } = await run('docker', ['images', '--format', '{{.Repository}} {{.ID}}']).catch(() => ({ stdout: '' }));
    const ours = [...new Set(stdout.split('\n').filter((r) => /\/kabuto\/load-u\d+-[a-z0-9]+\/\S* /.test(r)).map((r) => r.split(' ')[1]))];
    if (ours.length) await run('docker', ['rmi', '-f', ...ours]).catch(() => undefined);
    await dropDatabase();
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    let base: string;
    let adminToken: string;
    let runDir: string;
    if (args.url) {
      base = args.url.replace(/\/$/, '');
      adminToken = args['admin-token'] ?? process.env.DOCKYARD_ADMIN_TOKEN ?? '';
      if (!adminToken) throw new Error('--url needs --admin-token (or DOCKYARD_ADMIN_TOKEN) to create the simulated users');
      runDir = path.resolve(args['run-dir'] ?? path.join(REPO_ROOT, '.run'));
    } else {
      log('starting the stack (deploy/local/stack.sh)');
      // --database postgres: a database of the run's own on infra.sh's PostgreSQL (each service
      // its schema in it, as in production); dropped with the stack.
      const databaseUrl = args.database === 'postgres' ? await createDatabase(tmp) : '';
      stack = await startOwnStack({ DOCKYARD_GIT_ALLOW: '127.0.0.1', DOCKYARD_REGISTRY_SKIP_CLONE: '1', DOCKYARD_LOG_LEVEL: 'warn', DATABASE_URL: databaseUrl });
      base = stack.base;
      adminToken = stack.adminToken;
      runDir = path.join(stack.dir, 'run');
    }
    log(`stack at ${base}`);

    // A small repository Cachito clones and ECR submits name.
    const work = path.join(tmp, 'git', 'hello');
    fs.mkdirSync(work, { recursive: true });
    fs.writeFileSync(path.join(work, 'Dockerfile'), 'FROM dockyard/busybox:latest\n');
    fs.writeFileSync(path.join(work, 'README'), 'load benchmark\n');
    const git = (...a: string[]) => run('git', ['-C', work, '-c', 'user.name=load', '-c', 'user.email=load@example.org', ...a]);
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-q', '-m', 'hello');
    const ref = (await git('rev-parse', 'HEAD')).stdout.trim();
    daemon = await gitDaemon(path.join(tmp, 'git'));
    const gitUrl = daemon.url('hello');

    // One identity per simulated user.
    const suffix = Date.now().toString(36);
    const users: User[] = [];
    for (let i = 0; i < USERS; i++) {
      const login = `load-u${i}-${suffix}`;
      await call('setup', base, adminToken, '/auth/users', { method: 'POST', body: JSON.stringify({ login, approved: true }), headers: { 'content-type': 'application/json' } });
      const created = (await (await call('setup', base, adminToken, '/auth/tokens', { method: 'POST', body: JSON.stringify({ name: 'load', login }), headers: { 'content-type': 'application/json' } })).json()) as { token: string };
      users.push({ login, token: created.token, n: 0 });
    }
    log(`${USERS} users created; warming up (one flow each, not measured)`);
    stopAt = Date.now() + 120_000;
    await Promise.all(users.slice(0, 2).map((u) => Promise.all([ecr(base, u, gitUrl), kabuto(base, u), cachito(base, u, gitUrl, ref), ree(base, u)])));

    log(`measuring: ${USERS} users for ${DURATION_S} s`);
    measuring = true;
    const started = Date.now();
    stopAt = started + DURATION_S * 1000;
    const iterations = { n: 0 };
    await Promise.all(users.map((u, i) => simulate(base, u, i, gitUrl, ref, iterations)));
    const elapsedS = (Date.now() - started) / 1000;
    measuring = false;

    const memory = Object.entries(stackPids(runDir)).map(([name, pid]) => ({ name, pid, ...peakKb(pid) }));
    const file = report(elapsedS, iterations.n, memory, base, !args.url);
    // The stack's logs beside the figures when something failed (its run dir goes with the stack).
    if (process.exitCode && stack) fs.cpSync(path.join(runDir, 'logs'), file.replace(/\.json$/, '-logs'), { recursive: true });
  } finally {
    await cleanup();
  }
}

function report(elapsedS: number, iterations: number, memory: { name: string; pid: number; kb: number; processes: number }[], base: string, ownStack: boolean): string {
  const api = (name: string) => ['ECR', 'Kabuto', 'Cachito', 'REE'].indexOf(name.split(' ')[0]);
  const rows = [...groups.entries()].filter(([name]) => name !== 'setup').sort(([a], [b]) => api(a) - api(b));
  let total = 0;
  let errors = 0;
  const lines = ['', `${'endpoint group'.padEnd(22)} ${'requests'.padStart(9)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)} ${'flows failed'.padStart(13)}`];
  const table = rows.map(([name, g]) => {
    const sorted = [...g.latencies].sort((a, b) => a - b);
    const failed = flowFailures.get(name) ?? 0;
    total += g.latencies.length;
    errors += g.errors + failed;
    const row = { group: name, requests: g.latencies.length, rps: g.latencies.length / elapsedS, p50: pct(sorted, 50), p99: pct(sorted, 99), errors: g.errors, flowsFailed: failed, examples: g.examples };
    lines.push(`${name.padEnd(22)} ${String(row.requests).padStart(9)} ${row.rps.toFixed(1).padStart(8)} ${row.p50.toFixed(1).padStart(8)} ${row.p99.toFixed(1).padStart(8)} ${String(row.errors).padStart(7)} ${String(failed).padStart(13)}`);
    return row;
  });
  const all = rows.flatMap(([, g]) => g.latencies).sort((a, b) => a - b);
  lines.push(`${'all'.padEnd(22)} ${String(total).padStart(9)} ${(total / elapsedS).toFixed(1).padStart(8)} ${pct(all, 50).toFixed(1).padStart(8)} ${pct(all, 99).toFixed(1).padStart(8)} ${String(errors).padStart(7)}`);
  lines.push('', `${USERS} users, ${elapsedS.toFixed(1)} s measured, ${iterations} complete iterations (ECR+Kabuto+Cachito+REE), error rate ${total ? ((100 * errors) / total).toFixed(3) : '0'} % (target 0)`);
  lines.push('', `${'process'.padEnd(14)} ${'peak RSS (VmHWM)'.padStart(17)}  processes`);
  for (const m of memory) lines.push(`${m.name.padEnd(14)} ${`${(m.kb / 1024).toFixed(0)} MiB`.padStart(17)}  ${m.processes}`);
  if (!memory.length) lines.push('(no pid files found: give --run-dir of the stack)');
  lines.push('', `machine: ${os.cpus().length} cores, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (the load generator runs on the same machine${ownStack ? ', as does the stack it started' : ''})`);
  for (const [name, g] of rows) for (const e of g.examples) lines.push(`  e.g. ${name}: ${e}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  const resultsDir = path.join(REPO_ROOT, 'bench/results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `load-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ base, database: args.url ? 'unknown (--url)' : args.database, users: USERS, durationS: DURATION_S, elapsedS, iterations, table, memory, loadavg: os.loadavg() }, null, 2));
  log(`raw figures: ${path.relative(REPO_ROOT, file)}`);
  if (errors) process.exitCode = 2;
  return file;
}

main().catch((err) => {
  process.stderr.write(`load benchmark failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
