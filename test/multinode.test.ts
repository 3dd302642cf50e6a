/**
 * Scale-out under faults (issue 9): a 3-node NATS cluster (streams with 3 replicas), a private
 * PostgreSQL, two API processes of every service behind the gateway and two workers of every
 * service with background work. A batch of 200 Kabuto jobs, 50 builds (Kabuto images and ECR
 * builds) and 50 Cachito requests; midway one NATS node, one worker of each kind and one API
 * process are killed (SIGKILL) and PostgreSQL is restarted (immediate stop, start). Every item must
 * end in a final state exactly once (one terminal event each: none lost, none finished twice, none
 * stuck) and every acknowledged write must be readable through the gateway afterwards.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connectNats, EventPublisher, json, Subjects } from '@dockyard/kit';
import { gitDaemon, until } from '@dockyard/kit/testing';
import { baseEnv, healthy, readStream, startNatsCluster, startNode, startPostgres, type NatsCluster, type NodeProc, type Postgres } from './multinode/cluster.js';

const run = promisify(execFile);
const JOBS = 200;
const JOBS_PER_PIPELINE = 5;
const IMAGE_BUILDS = 25;
const ECR_BUILDS = 25;
const CACHITO = 50;
const AUTH = { authorization: 'sage testuser_token' };
const EXPECTED = { job: 'done', build: 'SUCCESS', request: 'complete' };
const FINAL = { job: ['done', 'failed', 'killed'], build: ['SUCCESS', 'FAILURE', 'ABORTED'], request: ['complete', 'failed', 'stale'] };

/** Runs `fn` over `items` with at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  }));
}

// About 3 minutes and ~20 processes: `make test` runs it on its own after the other files
// (deploy/local/test.sh sets DOCKYARD_MULTINODE=1); skipped in the main jest run.
const maybe = process.env.DOCKYARD_MULTINODE === '1' ? describe : describe.skip;

maybe('multi-node Dockyard survives killed NATS node, workers, API process and a PostgreSQL restart', () => {
  // Made when the test runs, not when jest collects it (a skipped run would leave it behind).
  let dir = '';
  let logDir = '';
  const prefix = `mn${randomBytes(3).toString('hex')}.`;
  let nats: NatsCluster | undefined;
  let pg: Postgres | undefined;
  let daemon: Awaited<ReturnType<typeof gitDaemon>> | undefined;
  const nodes: NodeProc[] = [];
  let gateway: NodeProc;
  let base = '';
  const failedCalls = { count: 0 };

  /** A call through the gateway; an unanswered or 5xx call is retried (it was not acknowledged). */
  async function call(method: string, url: string, body?: RequestInit['body'], headers: Record<string, string> = {}): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(`${base}${url}`, { method, body, headers: { ...AUTH, ...headers }, signal: AbortSignal.timeout(60_000) });
        if (res.status < 500) return res;
        await res.body?.cancel();
      } catch {}
      failedCalls.count++;
      if (attempt > 60) throw new Error(`${method} ${url}: no answer after ${attempt} attempts`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const okJson = async <T>(res: Response, what: string): Promise<T> => {
    if (res.status !== 200 && res.status !== 201) throw new Error(`${what}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };

  afterAll(async () => {
    for (const n of [gateway, ...nodes]) n?.child.kill('SIGKILL');
    daemon?.stop();
    nats?.stop();
    await pg?.stop();
    // Containers and images this run made.
    const ids = async (args: string[]) => (await run('docker', args).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean);
    const containers = await ids(['ps', '-aq', '--filter', `label=dockyard.execution.deployment=${prefix}`]);
    if (containers.length) await run('docker', ['rm', '-f', ...containers]).catch(() => undefined);
    const images = await ids(['images', '-a', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `label=dockyard.prefix=${prefix}`]);
    const imageIds = await ids(['images', '-aq', '--filter', `label=dockyard.prefix=${prefix}`]);
    const refs = [...images.filter((r) => !r.includes('<none>')), ...new Set(imageIds)];
    if (refs.length) await run('docker', ['rmi', '-f', ...refs]).catch(() => undefined);
    if (dir && !process.env.DOCKYARD_KEEP_MULTINODE) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('ends every item in a final state exactly once and keeps every acknowledged write', async () => {
    const started = Date.now();
    const phase: Record<string, number> = {};
    const mark = (name: string) => (phase[name] = Math.round((Date.now() - started) / 1000));
    dir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-multinode-'));
    logDir = path.join(dir, 'logs');
    mkdirSync(logDir, { recursive: true });

    // --- infrastructure: NATS cluster, private PostgreSQL, a git repository
    nats = await startNatsCluster(path.join(dir, 'nats'), logDir, 3);
    pg = await startPostgres();
    const repos = path.join(dir, 'git');
    const work = path.join(repos, 'hello');
    mkdirSync(work, { recursive: true });
    writeFileSync(path.join(work, 'Dockerfile'), `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${prefix}\nARG GREETING\nRUN echo "$GREETING" > /greeting\n`);
    writeFileSync(path.join(work, 'README'), 'hello\n');
    const git = (...args: string[]) => run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args]);
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-q', '-m', 'hello');
    const sha = (await git('rev-parse', 'HEAD')).stdout.trim();
    daemon = await gitDaemon(repos);
    mark('infrastructure');

    // --- Dockyard: two API processes per service, two workers per service with background work
    const env: NodeJS.ProcessEnv = {
      ...baseEnv(),
      DATABASE_URL: pg.url,
      DOCKYARD_NATS_URL: nats.urls.join(','),
      DOCKYARD_NATS_REPLICAS: '3',
      DOCKYARD_NATS_PREFIX: prefix,
      DOCKYARD_INTERNAL_SECRET: randomBytes(32).toString('hex'),
      DOCKYARD_LOG_LEVEL: 'warn',
      DOCKYARD_GIT_ALLOW: '127.0.0.1',
      DOCKYARD_SEED_TEST_USERS: '1',
      // A killed worker's work is redelivered after these.
      DOCKYARD_BUILD_ACK_WAIT_MS: '5000',
      DOCKYARD_EXECUTION_ACK_WAIT_MS: '5000',
      DOCKYARD_CACHITO_ACK_WAIT_MS: '5000',
      DOCKYARD_PROCESS_ACK_WAIT_MS: '5000',
      DOCKYARD_BUILD_MAX_ATTEMPTS: '3',
      // Four pipelines at a time per execution worker (jobs mostly sleep): the batch ends sooner
      // once one of the two workers is killed.
      DOCKYARD_EXECUTION_CONCURRENCY: '4',
    };
    // Processes of one service share its data directory (blobs, job files): as a shared volume would.
    const spawnService = (service: string, role: 'api' | 'worker', i: number) =>
      startNode(`${service}-${role}-${i}`, `services/${service}`, { ...env, DOCKYARD_ROLE: role, DOCKYARD_DATA_DIR: path.join(dir, 'data', service) }, logDir);
    // The first permissions process seeds the test identities and runs the first migrations alone.
    const first = await spawnService('permissions', 'api', 1);
    nodes.push(first);
    await healthy(first);
    // Then one API process of every other service (each migrates its schema), then the rest.
    const firsts: NodeProc[] = [];
    for (const s of ['registry', 'build', 'execution', 'source-cache', 'process']) firsts.push(await spawnService(s, 'api', 1));
    nodes.push(...firsts);
    await Promise.all(firsts.map((n) => healthy(n)));
    const plan: [string, 'api' | 'worker', number][] = [];
    for (const s of ['permissions', 'registry', 'build', 'execution', 'source-cache', 'process']) plan.push([s, 'api', 2]);
    for (const s of ['build', 'execution', 'source-cache', 'process']) plan.push([s, 'worker', 1], [s, 'worker', 2]);
    for (const [s, role, i] of plan) nodes.push(await spawnService(s, role, i));
    await Promise.all(nodes.map((n) => healthy(n)));
    const upstreams: Record<string, string> = {};
    for (const n of nodes.filter((x) => x.name.includes('-api-'))) {
      const v = `DOCKYARD_${n.service.replace(/-/g, '_').toUpperCase()}_URL`;
      upstreams[v] = upstreams[v] ? `${upstreams[v]},${n.url}` : n.url;
    }
    gateway = await startNode('gateway', 'gateway', { ...env, ...upstreams, DOCKYARD_GATEWAY_WORKERS: '1', DOCKYARD_RATE_LIMIT: '0', DOCKYARD_ACCESS_LOG: '0' }, logDir);
    await healthy(gateway);
    base = gateway.url;
    mark('processes up');

    // --- the batch, submitted through the gateway; one execution API process is killed midway
    const acked = { jobs: [] as { pipeline: number; job: number }[], images: [] as string[], ecr: [] as number[], requests: [] as number[] };
    const ecrApp = { description: 'multinode', source: { url: daemon.url('hello'), branch: 'main', build_args: { GREETING: 'hi' }, architectures: ['linux/amd64'] } };
    await okJson(await call('POST', '/apps/mn/hello/1.0', JSON.stringify(ecrApp), { 'content-type': 'application/json' }), 'submit app');

    const killedApi = nodes.find((n) => n.name === 'execution-api-1')!;
    let submitted = 0;
    const tick = () => {
      if (++submitted === 60) killedApi.child.kill('SIGKILL');
    };
    const pipelines = Array.from({ length: JOBS / JOBS_PER_PIPELINE }, (_, i) => i);
    const submitPipeline = async (p: number) => {
      const { id } = await okJson<{ id: number }>(await call('POST', '/pipeline', new URLSearchParams({ name: `mn-${p}` })), 'pipeline');
      for (let j = 0; j < JOBS_PER_PIPELINE; j++) {
        const form = new FormData();
        form.set('command', `echo job ${p}.${j} > /outbox/out.txt && sleep 1`);
        form.set('image_id', 'dockyard/busybox:latest');
        const job = await okJson<{ id: number }>(await call('POST', `/pipeline/${id}/job`, form), 'job');
        acked.jobs.push({ pipeline: id, job: job.id });
        tick();
      }
      const submitted = await call('POST', `/pipeline/${id}/submit`);
      // A retried submit (the first answer was lost or a 5xx) finds the pipeline running: the first took.
      if (submitted.status === 409 && /already running/.test(await submitted.clone().text())) return;
      await okJson(submitted, 'submit pipeline');
    };
    const submitImage = async (i: number) => {
      const dockerfile = `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${prefix}\nRUN echo image-${i} > /stamp\n`;
      const { build_id } = await okJson<{ build_id: string }>(await call('POST', '/image', new URLSearchParams({ name: `mn-${i}`, dockerfile })), 'image');
      acked.images.push(build_id);
      tick();
    };
    const submitEcr = async () => {
      const { build_number } = await okJson<{ build_number: number }>(await call('POST', '/builds/mn/hello/1.0'), 'ecr build');
      acked.ecr.push(build_number);
      tick();
    };
    const submitRequest = async () => {
      const { id } = await okJson<{ id: number }>(await call('POST', '/api/v1/requests', JSON.stringify({ repo: daemon!.url('hello'), ref: sha, pkg_managers: [] }), { 'content-type': 'application/json' }), 'cachito');
      acked.requests.push(id);
      tick();
    };
    const batch: (() => Promise<void>)[] = [];
    for (let i = 0; i < Math.max(pipelines.length, CACHITO); i++) {
      if (i < pipelines.length) batch.push(() => submitPipeline(i));
      if (i < IMAGE_BUILDS) batch.push(() => submitImage(i));
      if (i < ECR_BUILDS) batch.push(() => submitEcr());
      if (i < CACHITO) batch.push(() => submitRequest());
    }
    await pool(batch, 6, (w) => w());
    mark('batch submitted');

    // --- midway: once a quarter of the jobs ended, kill a NATS node and one worker of each kind, restart PostgreSQL
    const count = async (sql: string) => Number((await pg!.query(sql))[0][0]);
    const finalJobs = () => count(`SELECT count(*) FROM execution.jobs WHERE state IN ('done','failed','killed')`);
    await until(async () => ((await finalJobs()) >= JOBS / 4 ? true : undefined), 'a quarter of the jobs ended', 300_000, 1000);
    nats.nodes[2].child.kill('SIGKILL');
    for (const s of ['build', 'execution', 'source-cache', 'process']) nodes.find((n) => n.name === `${s}-worker-1`)!.child.kill('SIGKILL');
    mark('killed NATS node, workers');
    await pg.restart();
    mark('PostgreSQL restarted');

    // --- everything ends
    const pending = async () => ({
      jobs: await count(`SELECT count(*) FROM execution.jobs WHERE state NOT IN ('done','failed','killed')`),
      builds: await count(`SELECT count(*) FROM build.builds WHERE state NOT IN ('SUCCESS','FAILURE','ABORTED')`),
      requests: await count(`SELECT count(*) FROM source_cache.requests WHERE state NOT IN ('complete','failed','stale')`),
    });
    let left = await pending();
    await until(async () => {
      left = await pending().catch(() => left);
      return left.jobs + left.builds + left.requests === 0 ? true : undefined;
    }, 'every item in a final state', 420_000, 2000).catch((err) => {
      throw new Error(`${(err as Error).message}; still pending: ${JSON.stringify(left)}`);
    });
    mark('all final');

    // --- exactly once: one terminal event per item (events stream, 3 replicas, read after the faults)
    const problems: string[] = [];
    const nc = await connectNats(nats.urls.slice(0, 2).join(','), 'multinode-reader');
    const subjects = new Subjects(prefix);
    const events = await readStream(nc, subjects.stream('EVENTS'));
    // Every stream the platform made kept its 3 replicas (one process ensuring a stream with its own
    // default of 1 once shrank EVENTS to a single copy, which died with its NATS node); this reader's
    // connection has that default, and ensuring EVENTS through it must not lower it either.
    await new EventPublisher(nc, subjects).ensureStream();
    const names = json.decode<{ streams: string[] }>((await nc.request('$JS.API.STREAM.NAMES', '', { timeout: 10_000 })).data).streams.filter((n) => n.startsWith(subjects.stream('')));
    for (const name of names) {
      const info = json.decode<{ config: { num_replicas: number } }>((await nc.request(`$JS.API.STREAM.INFO.${name}`, '', { timeout: 10_000 })).data);
      if (info.config.num_replicas !== 3) problems.push(`stream ${name} has ${info.config.num_replicas} replica(s), not 3`);
    }
    await nc.close();
    const terminal = new Map<string, Set<string>>();
    const note = (key: string, id: string) => (terminal.get(key) ?? terminal.set(key, new Set()).get(key)!).add(id);
    for (const e of events) {
      const s = e.subject.slice(prefix.length);
      if (s === 'events.execution.job.state' && FINAL.job.includes(String(e.data.state))) note(`job:${e.data.jobId}`, String(e.data.id));
      if (s === 'events.build.build.finished') note(`build:${e.data.buildId}`, String(e.data.id));
      if (s === 'events.source-cache.request.state' && FINAL.request.includes(String(e.data.state))) note(`request:${e.data.requestId}`, String(e.data.id));
    }
    const rows = {
      job: await pg.query(`SELECT id, state FROM execution.jobs`),
      build: await pg.query(`SELECT id, state, kind FROM build.builds`),
      request: await pg.query(`SELECT id, state FROM source_cache.requests`),
    };
    const table: Record<string, Record<string, number>> = {};
    for (const [kind, list] of Object.entries(rows)) {
      for (const [id, state, sub] of list) {
        const label = kind === 'build' ? `build (${sub})` : kind;
        const row = (table[label] ??= { stored: 0, final: 0, 'finished once': 0, 'finished twice+': 0, 'never finished': 0 });
        row.stored++;
        row[state] = (row[state] ?? 0) + 1;
        if (FINAL[kind as keyof typeof FINAL].includes(state)) row.final++;
        // Every job's command succeeds, every Dockerfile builds, every repository is fine, and nobody
        // kills anything: any other final state is a fault the platform let through (a job killed by
        // a second worker racing the first, a request failed because its worker died).
        if (state !== EXPECTED[kind as keyof typeof EXPECTED]) problems.push(`${kind} ${id} ended ${state}, not ${EXPECTED[kind as keyof typeof EXPECTED]}`);
        const n = terminal.get(`${kind}:${id}`)?.size ?? 0;
        if (n === 1) row['finished once']++;
        else if (n === 0) (row['never finished']++, problems.push(`${kind} ${id} (${state}): no terminal event`));
        else (row['finished twice+']++, problems.push(`${kind} ${id}: ${n} terminal events`));
      }
    }
    table.acknowledged = { jobs: acked.jobs.length, 'image builds': acked.images.length, 'ecr builds': acked.ecr.length, 'cachito requests': acked.requests.length, 'client retries': failedCalls.count };

    // --- every acknowledged write is readable through the gateway (the killed API process is still down)
    let readable = 0;
    await pool(acked.jobs, 6, async ({ pipeline, job }) => {
      const body = await okJson<Record<string, { state: string }>>(await call('GET', `/pipeline/${pipeline}/job/${job}`), `job ${job}`);
      if (FINAL.job.includes(body[String(job)]?.state)) readable++;
      else problems.push(`job ${job} reads ${JSON.stringify(body)}`);
    });
    await pool(acked.images, 6, async (id) => {
      const body = await okJson<{ state: string }>(await call('GET', `/image/build/${id}`), `image build ${id}`);
      if (body.state !== 'PENDING') readable++;
      else problems.push(`image build ${id} still PENDING`);
    });
    const ecrNumbers = new Set((await pg.query(`SELECT number FROM build.builds WHERE kind = 'ecr'`)).map(([n]) => Number(n)));
    for (const n of acked.ecr) if (ecrNumbers.has(n)) readable++; else problems.push(`ECR build ${n} missing`);
    await okJson(await call('GET', '/builds/mn/hello/1.0'), 'latest ECR build');
    await pool(acked.requests, 6, async (id) => {
      const body = await okJson<{ state: string }>(await call('GET', `/api/v1/requests/${id}`), `request ${id}`);
      if (FINAL.request.includes(body.state)) readable++;
      else problems.push(`request ${id} reads ${body.state}`);
    });
    table.acknowledged['readable after'] = readable;
    mark('checked');

    process.stdout.write(`\nmulti-node run (${Math.round((Date.now() - started) / 1000)} s; phase ends, s: ${JSON.stringify(phase)})\n`);
    console.table(table);

    expect(problems).toEqual([]);
    expect(acked.jobs).toHaveLength(JOBS);
    expect(acked.images.length + acked.ecr.length).toBe(IMAGE_BUILDS + ECR_BUILDS);
    expect(acked.requests).toHaveLength(CACHITO);
    expect(readable).toBe(JOBS + IMAGE_BUILDS + ECR_BUILDS + CACHITO);
  }, 1_500_000);
});
