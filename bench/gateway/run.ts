/**
 * Gateway benchmark: what the gateway's proxy path costs compared with a plain nginx reverse proxy
 * and with calling the service directly.
 *
 *   node --import tsx bench/gateway/run.ts        (from the repository root; NATS must be running)
 *
 * Starts its own permissions service (seeded test users), registry service, gateway and Debian's
 * nginx on free ports, with a fresh temp data dir (embedded PGlite), its own NATS prefix and a
 * random internal secret. Then, with autocannon in this process, measures:
 *   (a) direct   GET http://127.0.0.1:<registry>/healthz
 *   (b) nginx    GET /healthz/registry  (Authorization: sage testuser_token; nginx only checks the header is there)
 *   (c) gateway  GET /healthz/registry  (same header: resolved via permissions/NATS, cached; rate limit on; access log on)
 *   (d) gateway  the same with DOCKYARD_ACCESS_LOG=0 (gateway restarted)
 * in two rounds of alternating order (a,b,c,d then d,c,b,a), and prints per target the mean over
 * rounds of req/s, p50 and p99 latency, the non-2xx and error counts, the CPU each process used,
 * and the ratios gateway/nginx and gateway/direct. Raw results go to bench/results/gateway-<ts>.json.
 *
 * Environment knobs:
 *   BENCH_DURATION (s, default 10)        measured seconds per target and round
 *   BENCH_CONNECTIONS (default 50)        concurrent keep-alive connections
 *   BENCH_WARMUP (s, default 2)           warm-up of each target (and of each fresh gateway)
 *   BENCH_ROUNDS (default 2)              rounds, alternating the order
 *   BENCH_NGINX_ACCESS_LOG (default 1)    1: nginx writes its default access log to a file in the temp dir; 0: access_log off
 *   BENCH_NGINX (default nginx)           the nginx binary
 *   BENCH_GATEWAY_WORKERS                 passed on as DOCKYARD_GATEWAY_WORKERS (unset: the gateway's own default)
 *   BENCH_GATEWAY_NODE_ARGS               extra node flags for the gateway only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
 *   BENCH_QUIET_WAIT (s, default 300)     before each measurement, wait at most this long for other processes to leave the CPU alone
 *   BENCH_RETRIES (default 2)             a run during which other processes used the CPU anyway is measured again, at most this many times
 *   BENCH_KEEP_TMP=1                      keep the temp dir (logs, nginx config) instead of removing it
 *   DOCKYARD_NATS_URL (default nats://127.0.0.1:4222)
 */
import autocannon from 'autocannon';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '@dockyard/kit/testing';

// ------------------------------------------------------------------------------------ settings

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function numberKnob(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name}=${JSON.stringify(raw)} must be a number >= ${min}`);
  return n;
}

const DURATION = numberKnob('BENCH_DURATION', 10, 1);
const CONNECTIONS = Math.round(numberKnob('BENCH_CONNECTIONS', 50, 1));
const WARMUP = numberKnob('BENCH_WARMUP', 2, 0);
const ROUNDS = Math.round(numberKnob('BENCH_ROUNDS', 2, 1));
const NGINX_ACCESS_LOG = (process.env.BENCH_NGINX_ACCESS_LOG ?? '1') !== '0';
const NGINX_BIN = process.env.BENCH_NGINX || 'nginx';
const GATEWAY_WORKERS = process.env.BENCH_GATEWAY_WORKERS ?? '';
const GATEWAY_NODE_ARGS = (process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const QUIET_WAIT = numberKnob('BENCH_QUIET_WAIT', 300, 0);
const RETRIES = Math.round(numberKnob('BENCH_RETRIES', 2, 0));
const KEEP_TMP = process.env.BENCH_KEEP_TMP === '1';
const NATS_URL = process.env.DOCKYARD_NATS_URL || 'nats://127.0.0.1:4222';

const AUTH = 'sage testuser_token';
/** Percent of one core used by foreign processes during a run above which the run is flagged. */
const OTHER_CPU_WARN = 15;
/** High enough never to trigger, but non-zero so the limiter stays in the request path. */
const RATE_LIMIT = 1_000_000_000;
const SERVICE_URL_VARS = ['PERMISSIONS', 'REGISTRY', 'BUILD', 'EXECUTION', 'SOURCE_CACHE', 'PROCESS'] as const;

type TargetKey = 'direct' | 'nginx' | 'gateway' | 'gateway-nolog';

interface Target {
  key: TargetKey;
  label: string;
  url: string;
  headers: Record<string, string>;
  /** For gateway targets: the access-log setting the running gateway must have. */
  accessLog?: boolean;
}

// ------------------------------------------------------------------------------------ processes

interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  exit: Promise<void>;
  exited: boolean;
}

const procs = new Set<Proc>();

const log = (msg: string) => process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function start(name: string, cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; logFile: string }): Proc {
  const fd = fs.openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
  const proc: Proc = { name, child, logFile: opts.logFile, exited: false, exit: Promise.resolve() };
  proc.exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      proc.exited = true;
      resolve();
    });
    child.once('error', (err) => {
      fs.appendFileSync(opts.logFile, `\n[bench] could not start ${cmd}: ${err.message}\n`);
      proc.exited = true;
      resolve();
    });
  });
  procs.add(proc);
  return proc;
}

/**
 * SIGTERM (graceful: NATS drained, database closed), SIGKILL after `graceMs`. The process may have
 * children of its own (nginx workers, gateway cluster workers): any still alive once it is gone
 * (same pid and start time as before, so never a recycled pid) get the same treatment.
 */
async function stop(proc: Proc, graceMs = 15_000): Promise<void> {
  const pid = proc.child.pid;
  const tree = pid ? descendants(pid).map((d) => ({ pid: d, start: startTime(d) })) : [];
  if (!proc.exited && proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (proc.exited) return;
      proc.child.kill('SIGKILL');
      for (const d of tree) if (startTime(d.pid) === d.start) process.kill(d.pid, 'SIGKILL');
    }, graceMs);
    await proc.exit;
    clearTimeout(timer);
  }
  const alive = () => tree.filter((d) => d.start !== null && startTime(d.pid) === d.start);
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    if (!alive().length) break;
    for (const d of alive()) process.kill(d.pid, signal);
    for (let i = 0; i < 30 && alive().length; i++) await sleep(100);
  }
  procs.delete(proc);
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}


/** Polls `check` until it returns true; fails early with the log tail if `proc` died. */
async function waitUntil(what: string, proc: Proc, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exited) throw new Error(`${proc.name} exited while waiting for ${what}; last lines of ${proc.logFile}:\n${tail(proc.logFile)}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last lines of ${proc.logFile}:\n${tail(proc.logFile)}`);
    await sleep(250);
  }
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(3000) });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

// ------------------------------------------------------------------------------------ CPU accounting

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User+system CPU seconds of a process (all its threads) from /proc; 0 once it is gone. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Busy and steal CPU seconds of the whole machine (all cores) from /proc/stat. */
function machineCpu(): { busy: number; steal: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is already in user). irq
  // and softirq are left out: much of it is this benchmark's own loopback traffic, charged to no process.
  const [user, nice, system, , , , , steal] = f;
  return { busy: (user + nice + system) / CLK_TCK, steal: (steal ?? 0) / CLK_TCK };
}

/** Parent pid and start time (clock ticks after boot) of every process, from /proc. */
function processTable(): Map<number, { ppid: number; start: number }> {
  const table = new Map<number, { ppid: number; start: number }>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(entry), { ppid: Number(fields[1]), start: Number(fields[19]) });
    } catch {
      /* gone */
    }
  }
  return table;
}

/** Every live descendant of `pid` (children, grandchildren...). */
function descendants(pid: number | undefined): number[] {
  if (!pid) return [];
  const table = processTable();
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const parent = queue.shift()!;
    for (const [child, info] of table) {
      if (info.ppid === parent && !out.includes(child)) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

/** A process and its descendants. */
const processTree = (pid: number | undefined): number[] => (pid ? [pid, ...descendants(pid)] : []);

function startTime(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? null : Number(fields[19]);
  } catch {
    return null;
  }
}

/**
 * Waits (1 s at least, BENCH_QUIET_WAIT s at most) until processes other than ours use at most
 * OTHER_CPU_WARN % of a core: on a shared 2-core machine a test suite running next to the
 * benchmark halves its figures. A run that starts anyway is flagged by its "other CPU".
 */
async function waitQuiet(ours: () => number[]): Promise<void> {
  const deadline = Date.now() + QUIET_WAIT * 1000;
  let told = false;
  for (;;) {
    const pids = ours();
    const m0 = machineCpu();
    const o0 = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const s0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(1000);
    const wall = (performance.now() - t0) / 1000;
    const self = process.cpuUsage(s0);
    const other = ((machineCpu().busy - m0.busy - (pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - o0) - (self.user + self.system) / 1e6) / wall) * 100;
    if (other <= OTHER_CPU_WARN) return;
    if (Date.now() > deadline) {
      log(`  the machine is still busy (other processes ${Math.round(other)}% of a core); measuring anyway`);
      return;
    }
    if (!told) log(`  waiting for the machine to be quiet (other processes use ${Math.round(other)}% of a core; at most ${QUIET_WAIT} s)`);
    told = true;
  }
}

// ------------------------------------------------------------------------------------ NATS clean-up

/**
 * Deletes the JetStream streams the services created under our prefix (they would otherwise pile
 * up in the shared NATS store, one per run). Speaks the plain NATS text protocol: the repository
 * root has no NATS client dependency, and this needs three request/replies.
 */
async function deleteStreams(natsUrl: string, streamPrefix: string): Promise<string[]> {
  const u = new URL(natsUrl.split(',')[0].trim());
  const sock = net.connect(Number(u.port || 4222), u.hostname);
  sock.setTimeout(5000, () => sock.destroy(new Error('NATS timed out')));
  let buf = Buffer.alloc(0);
  const waiters = new Map<string, (payload: string) => void>();
  let failure: Error | null = null;
  sock.on('error', (err) => (failure = err));
  sock.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const line = buf.subarray(0, eol).toString();
      if (line.startsWith('MSG ')) {
        const parts = line.split(' ');
        const size = Number(parts[parts.length - 1]);
        if (buf.length < eol + 2 + size + 2) return;
        const payload = buf.subarray(eol + 2, eol + 2 + size).toString();
        buf = buf.subarray(eol + 2 + size + 2);
        waiters.get(parts[1])?.(payload);
        continue;
      }
      buf = buf.subarray(eol + 2);
      if (line === 'PING') sock.write('PONG\r\n');
      else if (line.startsWith('-ERR')) failure = new Error(`NATS: ${line}`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const inbox = `_INBOX.bench${randomBytes(6).toString('hex')}`;
  sock.write(`CONNECT {"verbose":false,"pedantic":false,"protocol":1,"name":"dockyard-bench"}\r\nSUB ${inbox}.* 1\r\n`);
  let n = 0;
  const request = (subject: string, body: unknown): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      if (failure) return reject(failure);
      const reply = `${inbox}.${++n}`;
      const data = Buffer.from(JSON.stringify(body));
      const timer = setTimeout(() => reject(failure ?? new Error(`no reply on ${subject}`)), 3000);
      waiters.set(reply, (payload) => {
        clearTimeout(timer);
        waiters.delete(reply);
        resolve(JSON.parse(payload) as Record<string, unknown>);
      });
      sock.write(`PUB ${subject} ${reply} ${data.length}\r\n`);
      sock.write(Buffer.concat([data, Buffer.from('\r\n')]));
    });
  const deleted: string[] = [];
  try {
    const names: string[] = [];
    for (let offset = 0; ; ) {
      const page = await request('$JS.API.STREAM.NAMES', { offset });
      const batch = (page.streams as string[] | null) ?? [];
      names.push(...batch);
      offset += batch.length;
      if (batch.length === 0 || offset >= Number(page.total ?? 0)) break;
    }
    for (const name of names.filter((s) => s.startsWith(streamPrefix))) {
      const res = await request(`$JS.API.STREAM.DELETE.${name}`, {});
      if (res.success) deleted.push(name);
    }
  } finally {
    sock.end();
  }
  return deleted;
}

// ------------------------------------------------------------------------------------ load

interface Measurement {
  round: number;
  target: TargetKey;
  label: string;
  reqPerSec: number;
  p50: number;
  p99: number;
  latencyMean: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodeStats: unknown;
  /** Percent of one core used during the measurement. */
  /** Processes of the proxy (nginx master + workers, gateway primary + cluster workers). */
  proxyProcesses: number;
  /** Proxy processes that exited during the run (e.g. a crashed cluster worker). */
  proxyProcessesGone: number[];
  cpu: {
    proxy: number | null;
    registry: number;
    permissions: number;
    loadgen: number;
    /** Machine-wide CPU used by processes that are not this benchmark's: should be ~0. */
    other: number;
    steal: number;
  };
  raw: autocannon.Result;
}

let currentCannon: autocannon.Instance | null = null;

function cannon(target: Target, seconds: number): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    if (interrupted) return reject(new Error('interrupted'));
    currentCannon = autocannon(
      { url: target.url, headers: target.headers, connections: CONNECTIONS, pipelining: 1, duration: seconds, timeout: 10 },
      (err, result) => {
        currentCannon = null;
        if (interrupted) reject(new Error('interrupted'));
        else if (err) reject(err);
        else resolve(result);
      },
    );
  });
}

// ------------------------------------------------------------------------------------ main

const started = new Date();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dockyard-bench-'));
const natsPrefix = `bench${randomBytes(4).toString('hex')}.`;
const streamPrefix = natsPrefix.replace(/\./g, '_').toUpperCase();
let nginxProc: Proc | null = null;
let gatewayProc: Proc | null = null;
let registryProc: Proc | null = null;
let permissionsProc: Proc | null = null;

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    currentCannon?.stop();
    await Promise.all([...procs].map((p) => stop(p)));
    try {
      const deleted = await deleteStreams(NATS_URL, streamPrefix);
      if (deleted.length) log(`deleted NATS streams ${deleted.join(', ')}`);
    } catch (err) {
      log(`could not delete the NATS streams ${streamPrefix}*: ${(err as Error).message}`);
    }
    if (KEEP_TMP) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaning;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping everything this benchmark started`);
    void cleanup().finally(() => process.exit(130));
  });
}

function nodeEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // Nothing from the caller's Dockyard configuration leaks in (a DATABASE_URL would replace PGlite).
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DOCKYARD_') && k !== 'DATABASE_URL' && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, ...extra };
}

function nginxVersion(): string {
  // `nginx -v` prints to stderr.
  const res = spawnSync(NGINX_BIN, ['-v'], { encoding: 'utf8' });
  return `${res.stdout ?? ''}${res.stderr ?? ''}`.trim().replace(/^nginx version: /, '') || `unknown (${res.error?.message ?? 'no output'})`;
}

/** Reads through a file counting lines, without holding it in memory. */
function countLines(file: string): { bytes: number; lines: number } {
  let bytes = 0;
  let lines = 0;
  try {
    const fd = fs.openSync(file, 'r');
    const chunk = Buffer.alloc(1 << 20);
    for (let n; (n = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0; ) {
      bytes += n;
      for (let i = chunk.indexOf(10); i >= 0 && i < n; i = chunk.indexOf(10, i + 1)) lines++;
    }
    fs.closeSync(fd);
  } catch {
    /* no file */
  }
  return { bytes, lines };
}

/**
 * A digest of the code under test (gateway/src, packages/kit/src), so a result can be tied to the
 * tree it measured even when it was uncommitted.
 */
function sourceDigest(): string {
  const hash = createHash('sha256');
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) hash.update(`${path.relative(REPO_ROOT, full)}\0`).update(fs.readFileSync(full)).update('\0');
    }
  };
  for (const dir of ['gateway/src', 'packages/kit/src']) walk(path.join(REPO_ROOT, dir));
  return hash.digest('hex').slice(0, 12);
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<number> {
  fs.chmodSync(tmp, 0o755); // nginx workers drop root privileges and must reach their temp paths
  const logs = path.join(tmp, 'logs');
  fs.mkdirSync(logs);
  const [permissionsPort, registryPort, gatewayPort, nginxPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const secret = randomBytes(32).toString('hex');
  const machine = {
    nproc: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nginx: nginxVersion(),
    sourceDigest: sourceDigest(),
    autocannon: (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version,
  };
  log(`machine: ${machine.nproc} cores (${machine.cpu}), node ${machine.node}, ${machine.nginx}, autocannon ${machine.autocannon}; code gateway/src + packages/kit/src ${machine.sourceDigest}`);
  log(`settings: ${CONNECTIONS} connections, ${DURATION} s per target and round, ${ROUNDS} rounds, warm-up ${WARMUP} s, nginx access log ${NGINX_ACCESS_LOG ? 'to a file' : 'off'}`);
  log(`temp dir ${tmp}, NATS ${NATS_URL} prefix ${natsPrefix}`);

  const common = {
    DOCKYARD_INTERNAL_SECRET: secret,
    DOCKYARD_NATS_URL: NATS_URL,
    DOCKYARD_NATS_PREFIX: natsPrefix,
    DOCKYARD_DATA_DIR: path.join(tmp, 'data'),
    DOCKYARD_LOG_LEVEL: 'info',
    DOCKYARD_HOST: '127.0.0.1',
  };
  const tsNode = (extraArgs: string[] = []) => ['--import', 'tsx', ...extraArgs, 'src/server.ts'];

  // --- services
  permissionsProc = start('permissions', process.execPath, tsNode(), {
    cwd: path.join(REPO_ROOT, 'services/permissions'),
    env: nodeEnv({ ...common, DOCKYARD_PORT: String(permissionsPort), DOCKYARD_SEED_TEST_USERS: '1', DOCKYARD_ADMIN_TOKEN: `dky_${randomBytes(16).toString('hex')}` }),
    logFile: path.join(logs, 'permissions.log'),
  });
  registryProc = start('registry', process.execPath, tsNode(), {
    cwd: path.join(REPO_ROOT, 'services/registry'),
    env: nodeEnv({ ...common, DOCKYARD_PORT: String(registryPort) }),
    logFile: path.join(logs, 'registry.log'),
  });
  const permissions = `http://127.0.0.1:${permissionsPort}`;
  const registry = `http://127.0.0.1:${registryPort}`;
  const readyz = (base: string) => async () => (await get(`${base}/readyz`)).status === 200;
  await Promise.all([
    waitUntil(`${permissions}/readyz`, permissionsProc, readyz(permissions)),
    waitUntil(`${registry}/readyz`, registryProc, readyz(registry)),
  ]);
  log(`permissions ${permissions} and registry ${registry} ready`);

  // --- nginx
  const ngxDir = path.join(tmp, 'nginx');
  fs.mkdirSync(ngxDir, { mode: 0o755 });
  const nginxConf = `# generated by bench/gateway/run.ts
worker_processes auto;
daemon off;
pid ${ngxDir}/nginx.pid;
error_log ${ngxDir}/error.log warn;
events { worker_connections 4096; }
http {
  ${NGINX_ACCESS_LOG ? `access_log ${ngxDir}/access.log;` : 'access_log off;'}
  default_type application/octet-stream;
  # nginx closes a client keep-alive connection after 1000 requests by default; a load generator
  # racing that close counts errors. Neither the gateway nor the service has such a limit.
  keepalive_requests 1000000;
  client_body_temp_path ${ngxDir}/client_body;
  proxy_temp_path ${ngxDir}/proxy;
  fastcgi_temp_path ${ngxDir}/fastcgi;
  uwsgi_temp_path ${ngxDir}/uwsgi;
  scgi_temp_path ${ngxDir}/scgi;
  upstream registry {
    server 127.0.0.1:${registryPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${nginxPort};
    location = /healthz/registry {
      if ($http_authorization = "") { return 401; }
      proxy_pass http://registry/healthz;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location / { return 404; }
  }
}
`;
  fs.writeFileSync(path.join(ngxDir, 'nginx.conf'), nginxConf);
  const nginxArgs = ['-p', ngxDir, '-c', path.join(ngxDir, 'nginx.conf'), '-e', path.join(ngxDir, 'error.log')];
  try {
    execFileSync(NGINX_BIN, [...nginxArgs, '-t', '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`nginx rejects the generated configuration: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message)}`);
  }
  nginxProc = start('nginx', NGINX_BIN, nginxArgs, { cwd: ngxDir, env: process.env, logFile: path.join(logs, 'nginx.log') });
  const nginx = `http://127.0.0.1:${nginxPort}`;
  await waitUntil(`${nginx}/healthz/registry`, nginxProc, async () => (await get(`${nginx}/healthz/registry`, { authorization: AUTH })).status === 200, 20_000);
  const nginxNoAuth = await get(`${nginx}/healthz/registry`);
  if (nginxNoAuth.status !== 401) throw new Error(`nginx without Authorization answered ${nginxNoAuth.status}, expected 401`);
  log(`nginx ${nginx} ready (master pid ${nginxProc.child.pid}, workers ${descendants(nginxProc.child.pid).join(', ')})`);

  // --- gateway (restarted for each access-log setting)
  const gateway = `http://127.0.0.1:${gatewayPort}`;
  let gatewayStarts = 0;
  let gatewayAccessLog: boolean | null = null;
  const gatewayLogs: { file: string; accessLog: boolean }[] = [];
  const startGateway = async (accessLog: boolean) => {
    if (gatewayProc) await stop(gatewayProc);
    const logFile = path.join(logs, `gateway-${++gatewayStarts}-${accessLog ? 'log' : 'nolog'}.log`);
    gatewayLogs.push({ file: logFile, accessLog });
    const env: Record<string, string> = {
      ...common,
      DOCKYARD_PORT: String(gatewayPort),
      DOCKYARD_RATE_LIMIT: String(RATE_LIMIT),
      DOCKYARD_ACCESS_LOG: accessLog ? '1' : '0',
    };
    if (GATEWAY_WORKERS) env.DOCKYARD_GATEWAY_WORKERS = GATEWAY_WORKERS;
    for (const s of SERVICE_URL_VARS) env[`DOCKYARD_${s}_URL`] = s === 'PERMISSIONS' ? permissions : registry;
    gatewayProc = start('gateway', process.execPath, tsNode(GATEWAY_NODE_ARGS), { cwd: path.join(REPO_ROOT, 'gateway'), env: nodeEnv(env), logFile });
    await waitUntil(`${gateway}/readyz`, gatewayProc, readyz(gateway));
    // Sanity: the credential really is resolved and the limiter really is in the path.
    const ok = await get(`${gateway}/healthz/registry`, { authorization: AUTH });
    if (ok.status !== 200) throw new Error(`gateway /healthz/registry with a valid token answered ${ok.status}: ${ok.body}`);
    if (!ok.headers.get('x-ratelimit-limit')) throw new Error('gateway answered without x-ratelimit-limit: the rate limiter is not in the path');
    const bad = await get(`${gateway}/healthz/registry`, { authorization: 'sage not-a-token' });
    if (bad.status !== 401) throw new Error(`gateway with an unknown token answered ${bad.status}, expected 401`);
    gatewayAccessLog = accessLog;
    const tree = processTree(gatewayProc.child.pid);
    log(`gateway ${gateway} ready (pid ${gatewayProc.child.pid}, ${tree.length} process${tree.length > 1 ? `es: ${tree.join(', ')}` : ''}, access log ${accessLog ? 'on' : 'off'}${GATEWAY_NODE_ARGS.length ? `, node ${GATEWAY_NODE_ARGS.join(' ')}` : ''})`);
  };
  await startGateway(true);

  const targets: Record<TargetKey, Target> = {
    direct: { key: 'direct', label: '(a) direct registry', url: `${registry}/healthz`, headers: {} },
    nginx: { key: 'nginx', label: '(b) nginx', url: `${nginx}/healthz/registry`, headers: { authorization: AUTH } },
    gateway: { key: 'gateway', label: '(c) gateway', url: `${gateway}/healthz/registry`, headers: { authorization: AUTH }, accessLog: true },
    'gateway-nolog': { key: 'gateway-nolog', label: '(d) gateway, access log off', url: `${gateway}/healthz/registry`, headers: { authorization: AUTH }, accessLog: false },
  };

  const warm = async (t: Target) => {
    if (WARMUP <= 0) return;
    const r = await cannon(t, WARMUP);
    log(`warm-up ${t.label}: ${fmt(r.requests.total / WARMUP)} req/s${r.non2xx ? `, ${r.non2xx} non-2xx!` : ''}`);
  };
  for (const t of [targets.direct, targets.nginx, targets.gateway]) await warm(t);

  const discarded: Measurement[] = [];
  const measure = async (round: number, t: Target): Promise<Measurement> => {
    const key = t.key;
    const nginxPids = processTree(nginxProc!.child.pid);
    const gatewayPids = processTree(gatewayProc!.child.pid);
    const servicePids = () => [...processTree(registryProc!.child.pid), ...processTree(permissionsProc!.child.pid)];
    // Every process of ours, to tell how much of the machine something else used meanwhile.
    const ours = () => [...new Set([...nginxPids, ...gatewayPids, ...servicePids()])];
    await waitQuiet(ours); // also lets the previous run's connections close
    const proxyPids = key === 'nginx' ? nginxPids : key === 'direct' ? [] : gatewayPids;
    const proxyStarts = proxyPids.map(startTime);
    const ourPids = ours();
    const sumCpu = (pids: number[]) => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const cpu0 = { proxy: sumCpu(proxyPids), registry: cpuSeconds(registryProc!.child.pid), permissions: cpuSeconds(permissionsProc!.child.pid), ours: sumCpu(ourPids), self: process.cpuUsage(), machine: machineCpu() };
    const t0 = performance.now();
    const r = await cannon(t, DURATION);
    const wall = (performance.now() - t0) / 1000;
    const pct = (sec: number) => Math.round((sec / wall) * 100);
    const self = process.cpuUsage(cpu0.self);
    const selfSeconds = (self.user + self.system) / 1e6;
    const machine1 = machineCpu();
    // A proxy process that went away (a crashed gateway worker, restarted by its primary) is news.
    const gone = proxyPids.filter((pid, i) => startTime(pid) !== proxyStarts[i]);
    const tree1 = key === 'nginx' ? processTree(nginxProc!.child.pid) : key === 'direct' ? [] : processTree(gatewayProc!.child.pid);
    const m: Measurement = {
      round,
      target: key,
      label: t.label,
      reqPerSec: r.requests.average,
      p50: r.latency.p50,
      p99: r.latency.p99,
      latencyMean: r.latency.mean,
      non2xx: r.non2xx,
      errors: r.errors,
      timeouts: r.timeouts,
      statusCodeStats: (r as autocannon.Result & { statusCodeStats?: unknown }).statusCodeStats,
      proxyProcesses: proxyPids.length,
      proxyProcessesGone: gone,
      cpu: {
        proxy: proxyPids.length ? pct(sumCpu(proxyPids) - cpu0.proxy) : null,
        registry: pct(cpuSeconds(registryProc!.child.pid) - cpu0.registry),
        permissions: pct(cpuSeconds(permissionsProc!.child.pid) - cpu0.permissions),
        loadgen: pct(selfSeconds),
        other: Math.max(0, pct(machine1.busy - cpu0.machine.busy - (sumCpu(ourPids) - cpu0.ours) - selfSeconds)),
        steal: pct(machine1.steal - cpu0.machine.steal),
      },
      raw: r,
    };
    log(
      `  ${t.label.padEnd(28)} ${fmt(m.reqPerSec).padStart(7)} req/s  p50 ${m.p50} ms  p99 ${m.p99} ms  non-2xx ${m.non2xx}  errors ${m.errors}  ` +
        `CPU: proxy ${m.cpu.proxy ?? '-'}% registry ${m.cpu.registry}% permissions ${m.cpu.permissions}% loadgen ${m.cpu.loadgen}% other ${m.cpu.other}%${m.cpu.steal ? ` steal ${m.cpu.steal}%` : ''}`,
    );
    if (m.cpu.other > OTHER_CPU_WARN) log(`  !!! other processes used ${m.cpu.other}% of a core during this run: the machine was not quiet, figures are disturbed`);
    if (m.non2xx > 0 || m.errors > 0) log(`  !!! ${t.label}: ${m.non2xx} non-2xx responses and ${m.errors} errors (status codes ${JSON.stringify(m.statusCodeStats)})`);
    if (gone.length) log(`  !!! ${t.label}: process(es) ${gone.join(', ')} exited during the run (now ${tree1.join(', ')}); see the log`);
    for (const p of [permissionsProc!, registryProc!, nginxProc!, gatewayProc!]) {
      if (p.exited) throw new Error(`${p.name} died during the run; last lines of ${p.logFile}:\n${tail(p.logFile)}`);
    }
    return m;
  };

  const runs: Measurement[] = [];
  const baseOrder: TargetKey[] = ['direct', 'nginx', 'gateway', 'gateway-nolog'];
  for (let round = 1; round <= ROUNDS; round++) {
    const order = round % 2 === 1 ? baseOrder : [...baseOrder].reverse();
    log(`round ${round}: ${order.join(', ')}`);
    for (const key of order) {
      const t = targets[key];
      if (t.accessLog !== undefined && gatewayAccessLog !== t.accessLog) {
        await startGateway(t.accessLog);
        await warm(t);
      }
      for (let attempt = 1; ; attempt++) {
        const m = await measure(round, t);
        const retry = m.cpu.other > OTHER_CPU_WARN && attempt <= RETRIES;
        if (retry) {
          discarded.push(m);
          log(`  measuring ${t.label} again (attempt ${attempt + 1} of at most ${RETRIES + 1})`);
          continue;
        }
        runs.push(m);
        break;
      }
    }
  }
  if (gatewayProc) await stop(gatewayProc); // flushes a --cpu-prof profile, if one was asked for

  // --- summary
  const summary = Object.fromEntries(
    baseOrder.map((key) => {
      const rs = runs.filter((r) => r.target === key);
      return [
        key,
        {
          label: targets[key].label,
          url: targets[key].url,
          rounds: rs.length,
          reqPerSec: mean(rs.map((r) => r.reqPerSec)),
          reqPerSecByRound: rs.map((r) => Math.round(r.reqPerSec)),
          p50: mean(rs.map((r) => r.p50)),
          p99: mean(rs.map((r) => r.p99)),
          non2xx: rs.reduce((s, r) => s + r.non2xx, 0),
          errors: rs.reduce((s, r) => s + r.errors, 0),
          timeouts: rs.reduce((s, r) => s + r.timeouts, 0),
          cpuProxy: rs[0].cpu.proxy === null ? null : mean(rs.map((r) => r.cpu.proxy ?? 0)),
          cpuRegistry: mean(rs.map((r) => r.cpu.registry)),
          cpuLoadgen: mean(rs.map((r) => r.cpu.loadgen)),
          cpuOther: mean(rs.map((r) => r.cpu.other)),
          cpuSteal: mean(rs.map((r) => r.cpu.steal)),
          proxyProcesses: Math.max(...rs.map((r) => r.proxyProcesses)),
        },
      ];
    }),
  ) as Record<TargetKey, { label: string; url: string; rounds: number; reqPerSec: number; reqPerSecByRound: number[]; p50: number; p99: number; non2xx: number; errors: number; timeouts: number; cpuProxy: number | null; cpuRegistry: number; cpuLoadgen: number; cpuOther: number; cpuSteal: number; proxyProcesses: number }>;

  const header = ['target', 'req/s', 'by round', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'proxy CPU', 'registry CPU', 'loadgen CPU', 'other CPU', 'steal'];
  const rows = baseOrder.map((key) => {
    const s = summary[key];
    return [
      s.label,
      fmt(s.reqPerSec),
      s.reqPerSecByRound.map((x) => fmt(x)).join(' / '),
      fmt(s.p50, 1),
      fmt(s.p99, 1),
      String(s.non2xx),
      String(s.errors),
      s.cpuProxy === null ? '-' : `${fmt(s.cpuProxy)}% (${s.proxyProcesses}p)`,
      `${fmt(s.cpuRegistry)}%`,
      `${fmt(s.cpuLoadgen)}%`,
      `${fmt(s.cpuOther)}%`,
      `${fmt(s.cpuSteal)}%`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const table = [line(header), `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');

  const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
  const ratios = {
    'gateway/nginx req/s': ratio(summary.gateway.reqPerSec, summary.nginx.reqPerSec),
    'gateway/nginx p99': ratio(summary.gateway.p99, summary.nginx.p99),
    'gateway/direct req/s': ratio(summary.gateway.reqPerSec, summary.direct.reqPerSec),
    'gateway/direct p99': ratio(summary.gateway.p99, summary.direct.p99),
    'gateway-nolog/nginx req/s': ratio(summary['gateway-nolog'].reqPerSec, summary.nginx.reqPerSec),
    'gateway-nolog/nginx p99': ratio(summary['gateway-nolog'].p99, summary.nginx.p99),
    'gateway-nolog/direct req/s': ratio(summary['gateway-nolog'].reqPerSec, summary.direct.reqPerSec),
    'gateway-nolog/direct p99': ratio(summary['gateway-nolog'].p99, summary.direct.p99),
    'nginx/direct req/s': ratio(summary.nginx.reqPerSec, summary.direct.reqPerSec),
  };
  const meets = (key: 'gateway' | 'gateway-nolog') => summary[key].reqPerSec >= 0.6 * summary.nginx.reqPerSec && summary[key].p99 <= 2 * summary.nginx.p99;
  const target = {
    rule: 'gateway req/s >= 0.6 x nginx and gateway p99 <= 2 x nginx p99',
    gateway: meets('gateway'),
    'gateway-nolog': meets('gateway-nolog'),
  };
  const invalid = runs.filter((r) => r.non2xx > 0 || r.errors > 0 || r.timeouts > 0);

  const gatewayLogSizes = gatewayLogs.map((g) => ({ file: path.basename(g.file), accessLog: g.accessLog, ...countLines(g.file) }));
  const nginxAccess = NGINX_ACCESS_LOG ? countLines(path.join(ngxDir, 'access.log')) : null;

  process.stdout.write(`\nGateway benchmark: ${CONNECTIONS} connections, ${DURATION} s per target x ${ROUNDS} rounds (order alternating), mean over rounds\n`);
  process.stdout.write(`machine: ${machine.nproc} cores, ${machine.cpu}, node ${machine.node}, ${machine.nginx}; nginx access log ${NGINX_ACCESS_LOG ? 'to a file' : 'off'}; code digest ${machine.sourceDigest}\n\n`);
  process.stdout.write(`${table}\n\n`);
  process.stdout.write(
    `CPU: percent of one core (${machine.nproc} cores = ${machine.nproc * 100}%) during the measured seconds; proxy = nginx (master + workers) or the gateway (all its processes; "2p" = 2 processes); steal = taken by the hypervisor; loadgen = autocannon (this process); other = every process not started by this benchmark.\n`,
  );
  for (const r of runs.filter((x) => x.proxyProcessesGone.length)) {
    process.stdout.write(`!!! round ${r.round} ${r.label}: proxy process(es) ${r.proxyProcessesGone.join(', ')} exited during the run\n`);
  }
  if (discarded.length) process.stdout.write(`${discarded.length} run(s) disturbed by other processes were measured again (kept in the JSON as "discarded").\n`);
  const noisy = runs.filter((r) => r.cpu.other > OTHER_CPU_WARN);
  if (noisy.length) {
    process.stdout.write(`!!! the machine was not quiet: other processes used more than ${OTHER_CPU_WARN}% of a core in ${noisy.length} of ${runs.length} runs (${noisy.map((r) => `round ${r.round} ${r.target} ${r.cpu.other}%`).join(', ')}); do not publish these figures\n`);
  }
  process.stdout.write(`gateway logs: ${gatewayLogSizes.map((g) => `${g.file} ${fmt(g.lines)} lines`).join(', ')}${nginxAccess ? `; nginx access log ${fmt(nginxAccess.lines)} lines` : ''}\n\n`);
  process.stdout.write('ratios (mean over rounds):\n');
  for (const [k, v] of Object.entries(ratios)) process.stdout.write(`  ${k.padEnd(28)} ${fmt(v, 2)}x\n`);
  process.stdout.write(`\ntarget (${target.rule}):\n`);
  process.stdout.write(`  (c) gateway:                 ${target.gateway ? 'MET' : 'NOT MET'}\n`);
  process.stdout.write(`  (d) gateway, access log off: ${target['gateway-nolog'] ? 'MET' : 'NOT MET'}\n`);
  if (invalid.length) {
    const bar = '!'.repeat(100);
    process.stdout.write(`\n${bar}\n!!! INVALID RUN: non-2xx responses or errors, the figures above are meaningless:\n`);
    for (const r of invalid) process.stdout.write(`!!!   round ${r.round} ${r.label}: non-2xx ${r.non2xx}, errors ${r.errors}, timeouts ${r.timeouts}, status codes ${JSON.stringify(r.statusCodeStats)}\n`);
    process.stdout.write(`${bar}\n`);
  }

  const resultsDir = path.join(REPO_ROOT, 'bench/results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `gateway-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(
    file,
    `${JSON.stringify(
      {
        benchmark: 'gateway',
        startedAt: started.toISOString(),
        finishedAt: new Date().toISOString(),
        valid: invalid.length === 0,
        quiet: runs.every((r) => r.cpu.other <= OTHER_CPU_WARN),
        machine,
        settings: {
          durationSeconds: DURATION,
          connections: CONNECTIONS,
          warmupSeconds: WARMUP,
          rounds: ROUNDS,
          order: 'odd rounds a,b,c,d; even rounds d,c,b,a',
          nginxAccessLog: NGINX_ACCESS_LOG ? 'file' : 'off',
          gatewayNodeArgs: GATEWAY_NODE_ARGS,
          gatewayWorkers: GATEWAY_WORKERS || 'default',
          gatewayRateLimit: RATE_LIMIT,
          gatewayAuthCacheMs: 'default (5000)',
          authorization: AUTH,
        },
        summary,
        ratios,
        target,
        logs: { gateway: gatewayLogSizes, nginxAccess },
        nginxConf,
        runs,
        discarded,
      },
      null,
      2,
    )}\n`,
  );
  log(`raw results: ${path.relative(process.cwd(), file)}`);
  return invalid.length ? 2 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  if (!interrupted) {
    process.stderr.write(`\nbenchmark failed: ${(err as Error).stack ?? String(err)}\n`);
    if (!KEEP_TMP) process.stderr.write('(set BENCH_KEEP_TMP=1 to keep the logs in the temp dir)\n');
  }
} finally {
  await cleanup();
}
process.exit(interrupted ? 130 : code);
