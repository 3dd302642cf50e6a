/**
 * Execution benchmark: what Dockyard adds to running a command in a container.
 *
 *   eval "$(deploy/local/infra.sh env)" && node --import tsx bench/execution/run.ts    (from the repository root)
 *
 * Starts the execution service in this process (HTTP on a free port, its own PostgreSQL schema,
 * NATS prefix and data dir, as the tests do; the real Docker engine) and measures, in one run:
 *
 *   (1) overhead per job: BENCH_JOBS rounds, alternating, of
 *         - `docker run --rm --network none --cap-drop ALL -m 512m dockyard/busybox:latest /bin/sh -c true` (the CLI),
 *         - the same through the engine API (create, start, wait, remove; no CLI start-up),
 *         - a one-job Dockyard pipeline running `true`: POST /pipeline/<id>/submit until
 *           events.execution.pipeline.finished (queue, /inbox put, container, logs, usage,
 *           /outbox zip, container removed, outcome stored);
 *       overhead = Dockyard median − docker run median (target <= 150 ms), also vs the engine API;
 *   (2) throughput: 100 jobs (`true`) over 10 pipelines submitted at once, until all 10 finished,
 *       with DOCKYARD_EXECUTION_CONCURRENCY (default 2) pipelines side by side, against the same
 *       100 containers run through the engine API with the same parallelism;
 *   (3) log latency: a job (dockyard/debian:bookworm, python3) prints its wall-clock time every
 *       20 ms, BENCH_LINES times; an SSE client (GET /execution/<id>/logs/stream over HTTP)
 *       records when each line arrives; latency = arrival − printed time (same host clock;
 *       includes the engine's log pipeline, batching, PostgreSQL insert, NATS, SSE). Target p99 <= 250 ms.
 *
 * Knobs: BENCH_JOBS (default 10), BENCH_LINES (default 500), DOCKYARD_EXECUTION_CONCURRENCY.
 * Raw figures go to bench/results/execution-<timestamp>.json.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { IDENTITY_HEADER, identitySigner, type Identity } from '@dockyard/kit';
import { testEnv } from '@dockyard/kit/testing';
import { buildExecutionApp } from '../../services/execution/src/app.js';
import { loadExecutionConfig } from '../../services/execution/src/config.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const JOBS = Number(process.env.BENCH_JOBS ?? 10);
const LINES = Number(process.env.BENCH_LINES ?? 500);
const BUSYBOX = 'dockyard/busybox:latest';
const run = promisify(execFile);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const f = (n: number) => n.toFixed(1);

const env = testEnv();
const config = loadExecutionConfig(env.serviceEnv('execution', { DOCKYARD_LOG_LEVEL: 'warn' }));
const app = await buildExecutionApp(config);
await app.listen({ host: '127.0.0.1', port: 0 });
const port = (app.server.address() as { port: number }).port;
const sign = identitySigner(config.DOCKYARD_INTERNAL_SECRET, 3_600_000);
const bench: Identity = { id: 'id-bench', login: 'bench', admin: false, approved: true, groups: [], roles: [] };
const headers = (): Record<string, string> => ({ [IDENTITY_HEADER]: sign(bench) });
const base = `http://127.0.0.1:${port}`;
const api = async (method: string, url: string, body?: unknown) => {
  const res = await fetch(base + url, {
    method,
    headers: body === undefined ? headers() : { ...headers(), 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return (await res.json()) as Record<string, any>;
};

const finishedWaiters = new Map<number, () => void>();
const sub = app.nats.subscribe(app.subjects.of('events.execution.pipeline.finished'));
void (async () => {
  for await (const m of sub) {
    const { pipelineId } = m.json<{ pipelineId: number }>();
    finishedWaiters.get(pipelineId)?.();
  }
})();
const finished = (pid: number) => new Promise<void>((resolve) => finishedWaiters.set(pid, resolve));

async function pipelineWith(commands: string[], image = BUSYBOX): Promise<number> {
  const { id } = await api('POST', '/pipeline', { name: 'bench' });
  for (const command of commands) await api('POST', `/pipeline/${id}/job`, { command, image_id: image });
  return id;
}

async function dockerCli(): Promise<number> {
  const t0 = performance.now();
  await run('docker', ['run', '--rm', '--network', 'none', '--cap-drop', 'ALL', '-m', '512m', BUSYBOX, '/bin/sh', '-c', 'true']);
  return performance.now() - t0;
}

async function engineApi(): Promise<number> {
  const t0 = performance.now();
  const c = await app.docker.createContainer({
    Image: BUSYBOX,
    Entrypoint: ['/bin/sh'],
    Cmd: ['-c', 'true'],
    Labels: { 'dockyard.execution.deployment': `${env.env.DOCKYARD_NATS_PREFIX}bench` },
    NetworkDisabled: true,
    HostConfig: { NetworkMode: 'none', CapDrop: ['ALL'], Memory: 512 * 1024 * 1024 },
  });
  await c.start();
  await c.wait();
  await c.remove({ force: true });
  return performance.now() - t0;
}

async function dockyardJob(pid: number): Promise<number> {
  const t0 = performance.now();
  const done = finished(pid);
  await api('POST', `/pipeline/${pid}/submit`);
  await done;
  return performance.now() - t0;
}

const results: Record<string, unknown> = { startedAt: new Date().toISOString(), jobs: JOBS, lines: LINES, concurrency: config.DOCKYARD_EXECUTION_CONCURRENCY, cpus: os.cpus().length, node: process.version };
try {
  // Warm-up: the image cache, the first container, the service's first job.
  await dockerCli();
  await engineApi();
  const warm = await pipelineWith(['true']);
  await dockyardJob(warm);

  // (1) overhead per job
  const cli: number[] = [];
  const eng: number[] = [];
  const dky: number[] = [];
  const single = await pipelineWith(['true']);
  for (let i = 0; i < JOBS; i++) {
    const order = i % 2 ? ['dky', 'eng', 'cli'] : ['cli', 'eng', 'dky'];
    for (const o of order) {
      if (o === 'cli') cli.push(await dockerCli());
      if (o === 'eng') eng.push(await engineApi());
      if (o === 'dky') dky.push(await dockyardJob(single));
    }
  }
  const overhead = { cli: { median: median(cli), mean: mean(cli) }, engine: { median: median(eng), mean: mean(eng) }, dockyard: { median: median(dky), mean: mean(dky) } };
  results.overhead = { ...overhead, raw: { cli, eng, dky } };
  console.log(`\n(1) one job running \`true\`, ${JOBS} rounds (ms)`);
  console.log('| path | median | mean |');
  console.log('|---|---:|---:|');
  console.log(`| docker run (CLI) | ${f(overhead.cli.median)} | ${f(overhead.cli.mean)} |`);
  console.log(`| engine API (create/start/wait/remove) | ${f(overhead.engine.median)} | ${f(overhead.engine.mean)} |`);
  console.log(`| Dockyard (submit -> pipeline.finished) | ${f(overhead.dockyard.median)} | ${f(overhead.dockyard.mean)} |`);
  console.log(`overhead vs docker run: ${f(overhead.dockyard.median - overhead.cli.median)} ms (target <= 150); vs engine API: ${f(overhead.dockyard.median - overhead.engine.median)} ms`);

  // (2) throughput
  const pipelines: number[] = [];
  for (let p = 0; p < 10; p++) pipelines.push(await pipelineWith(Array.from({ length: 10 }, () => 'true')));
  const t0 = performance.now();
  await Promise.all(pipelines.map((pid) => dockyardJob(pid)));
  const dockyardSeconds = (performance.now() - t0) / 1000;
  const conc = config.DOCKYARD_EXECUTION_CONCURRENCY;
  const t1 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < 100) {
      next++;
      await engineApi();
    }
  }));
  const engineSeconds = (performance.now() - t1) / 1000;
  results.throughput = { dockyardSeconds, engineSeconds, dockyardJobsPerSecond: 100 / dockyardSeconds, engineJobsPerSecond: 100 / engineSeconds };
  console.log(`\n(2) 100 jobs over 10 pipelines, ${conc} side by side`);
  console.log('| path | seconds | jobs/s |');
  console.log('|---|---:|---:|');
  console.log(`| Dockyard | ${f(dockyardSeconds)} | ${(100 / dockyardSeconds).toFixed(2)} |`);
  console.log(`| engine API, ${conc} at a time | ${f(engineSeconds)} | ${(100 / engineSeconds).toFixed(2)} |`);
  console.log(`ratio Dockyard / engine API: ${(engineSeconds / dockyardSeconds).toFixed(2)}x the throughput`);

  // (3) log latency through SSE
  const printer = `python3 -u -c "import time\nfor i in range(${LINES}):\n    print(time.time_ns(), flush=True)\n    time.sleep(0.02)"`;
  const lp = await pipelineWith([printer], 'dockyard/debian:bookworm');
  const { [String(lp)]: pv } = await api('GET', `/pipeline/${lp}`);
  const jid = (pv as { jobs: { id: number }[] }).jobs[0].id;
  const latencies: number[] = [];
  const streamDone = new Promise<void>((resolve, reject) => {
    const req = http.get(`${base}/execution/${jid}/logs/stream`, { headers: headers() }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const now = performance.timeOrigin + performance.now();
        buf += chunk;
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (!frame.includes('event: log')) continue;
          const line = JSON.parse(frame.slice(frame.indexOf('data: ') + 6)).logline as string;
          if (/^[0-9]+$/.test(line)) latencies.push(now - Number(BigInt(line) / 1000n) / 1000);
        }
      });
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  const lpDone = finished(lp);
  await new Promise((r) => setTimeout(r, 200)); // the stream is open before the job starts
  await api('POST', `/pipeline/${lp}/submit`);
  await Promise.all([lpDone, streamDone]);
  results.logLatency = { count: latencies.length, p50: pct(latencies, 50), p95: pct(latencies, 95), p99: pct(latencies, 99), max: Math.max(...latencies), raw: latencies };
  console.log(`\n(3) log latency, printed -> SSE client, ${latencies.length}/${LINES} lines (ms)`);
  console.log('| p50 | p95 | p99 | max |');
  console.log('|---:|---:|---:|---:|');
  console.log(`| ${f(pct(latencies, 50))} | ${f(pct(latencies, 95))} | ${f(pct(latencies, 99))} | ${f(Math.max(...latencies))} |`);
  console.log(`target p99 <= 250 ms: ${pct(latencies, 99) <= 250 ? 'met' : 'NOT met'}`);
  console.log(`load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (${os.cpus().length} cores; the machine is shared)`);
  results.loadavg = os.loadavg();
  const dir = path.join(REPO_ROOT, 'bench/results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `execution-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(results, null, 2));
  console.log(`raw results: ${path.relative(REPO_ROOT, file)}`);
} finally {
  sub.unsubscribe();
  await app.close();
  const left = await app.docker.listContainers({ all: true, filters: { label: [`dockyard.execution.deployment`] } }).catch(() => []);
  for (const c of left.filter((c) => c.Labels['dockyard.execution.deployment']?.startsWith(env.env.DOCKYARD_NATS_PREFIX))) {
    await app.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  }
  await env.cleanup();
}
