/**
 * Build benchmark: time from POST /image to a SUCCESS state for a small Dockerfile, cold and
 * cached, against a plain `docker build` + `docker push` of the same context in the same run.
 *
 *   node --import tsx bench/build/run.ts     (from the repository root; dockerd, NATS and the
 *                                             registry on 127.0.0.1:5000 must be running)
 *
 * Starts the build service as `node --import tsx services/build/src/server.ts` on a free port with
 * its own NATS prefix, temp data dir and PostgreSQL schema (kit testEnv: needs DATABASE_URL and
 * DOCKYARD_NATS_URL, i.e. `eval "$(deploy/local/infra.sh env)"`), and talks to it directly with a signed internal identity token (the gateway is not in
 * the path). Per figure:
 *   service cold    POST /image {name, dockerfile} with a Dockerfile no build has seen; poll
 *                   GET /image/build/<id> every 20 ms until SUCCESS (build + push to the registry)
 *   service cached  the same POST again (layer cache hit, layers already in the registry)
 *   docker cold     `docker build` of the same context with a fresh Dockerfile + `docker push`
 *   docker cached   the same again
 * Cached figures are the median of BENCH_REPEAT (default 5) runs, alternating service and docker.
 * Overhead = median over pairs of (service cached - docker cached).
 * Cleans up its images (label bench=<run id>) and its JetStream streams.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectNats, identitySigner, IDENTITY_HEADER, ANONYMOUS } from '@dockyard/kit';
import { testEnv, freePort } from '@dockyard/kit/testing';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REPEAT = Number(process.env.BENCH_REPEAT ?? 5);
const REGISTRY = process.env.DOCKYARD_REGISTRY ?? '127.0.0.1:5000';
const NATS_URL = process.env.DOCKYARD_NATS_URL ?? 'nats://127.0.0.1:4222';
// Its own schema, NATS prefix, secret and data dir (kit testEnv; dropped at the end).
const run = testEnv();
const runId = run.id;
const prefix = run.env.DOCKYARD_NATS_PREFIX;
const secret = run.env.DOCKYARD_INTERNAL_SECRET;
const tmp = run.dataDir;


const dockerfile = (variant: string) => `FROM dockyard/busybox:latest\nLABEL bench=${runId}\nRUN echo ${variant} > /variant.txt\nCMD ["cat", "/variant.txt"]\n`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const port = await freePort();
  const env = { ...process.env, ...run.serviceEnv('build'), DOCKYARD_PORT: String(port), DOCKYARD_LOG_LEVEL: 'warn', DOCKYARD_REGISTRY: REGISTRY };
  const logFile = fs.openSync(path.join(tmp, 'build.log'), 'w');
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/build/src/server.ts'], { cwd: REPO_ROOT, env, stdio: ['ignore', logFile, logFile] });
  const base = `http://127.0.0.1:${port}`;
  const headers = { [IDENTITY_HEADER]: identitySigner(secret, 3_600_000)({ ...ANONYMOUS, id: 'u-bench', login: 'bench', approved: true }) };
  try {
    for (let i = 0; ; i++) {
      const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
      if (ok) break;
      if (i > 300 || child.exitCode !== null) throw new Error(`the build service did not become ready; see ${path.join(tmp, 'build.log')}`);
      await sleep(100);
    }

    const service = async (variant: string) => {
      const t0 = performance.now();
      const res = await fetch(`${base}/image`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `bench-${runId}`, dockerfile: dockerfile(variant) }),
      });
      const { build_id: id } = (await res.json()) as { build_id: string };
      for (;;) {
        const state = (await (await fetch(`${base}/image/build/${id}`, { headers })).json()) as { state: string; error?: string };
        if (state.state === 'SUCCESS') return performance.now() - t0;
        if (state.state !== 'PENDING') throw new Error(`build ${id} ended ${state.state}: ${state.error}`);
        await sleep(20);
      }
    };
    const plain = (variant: string) => {
      const dir = path.join(tmp, `ctx-${variant}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile(variant));
      const tag = `${REGISTRY}/bench/${runId}/plain:latest`;
      const t0 = performance.now();
      execFileSync('docker', ['build', '-q', '--label', `dockyard.prefix=${prefix}`, '-t', tag, dir], { stdio: 'ignore', env: { ...process.env, DOCKER_BUILDKIT: '0' } });
      execFileSync('docker', ['push', '-q', tag], { stdio: 'ignore' });
      return performance.now() - t0;
    };

    // Warm-up: the service's first request pays for JIT, the Prisma client and the NATS consumer.
    await service('warmup');
    const serviceCold = await service('cold-service');
    const dockerCold = plain('cold-docker');
    const cached: { service: number; docker: number }[] = [];
    for (let i = 0; i < REPEAT; i++) {
      if (i % 2 === 0) cached.push({ service: await service('cold-service'), docker: plain('cold-docker') });
      else {
        const d = plain('cold-docker');
        cached.push({ service: await service('cold-service'), docker: d });
      }
    }
    const svc = median(cached.map((c) => c.service));
    const dkr = median(cached.map((c) => c.docker));
    const overhead = median(cached.map((c) => c.service - c.docker));
    const fmt = (ms: number) => `${ms.toFixed(0).padStart(6)} ms`;
    console.log(`\nBuild benchmark (${runId}, ${REPEAT} cached runs each, ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})`);
    console.log(`| figure | Dockyard POST -> SUCCESS | docker build + push | difference |`);
    console.log(`|---|---:|---:|---:|`);
    console.log(`| cold | ${fmt(serviceCold)} | ${fmt(dockerCold)} | ${fmt(serviceCold - dockerCold)} |`);
    console.log(`| cached (median) | ${fmt(svc)} | ${fmt(dkr)} | ${fmt(overhead)} (median of pairs) |`);
    console.log(`| cached runs | ${cached.map((c) => c.service.toFixed(0)).join(' / ')} | ${cached.map((c) => c.docker.toFixed(0)).join(' / ')} | |`);
    console.log(`\ntargets: cached rebuild <= 1500 ms: ${svc <= 1500 ? 'met' : 'NOT met'} (${svc.toFixed(0)} ms); overhead <= 300 ms: ${overhead <= 300 ? 'met' : 'NOT met'} (${overhead.toFixed(0)} ms)`);
    fs.mkdirSync(path.join(REPO_ROOT, 'bench/results'), { recursive: true });
    const out = path.join(REPO_ROOT, 'bench/results', `build-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(out, JSON.stringify({ runId, serviceCold, dockerCold, cached, median: { service: svc, docker: dkr, overhead }, loadavg: os.loadavg() }, null, 2));
    console.log(`raw: ${path.relative(REPO_ROOT, out)}`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    // Images of this run (the service's and docker's), then its streams and schema.
    const ids = execFileSync('docker', ['images', '-a', '-q', '--filter', `label=bench=${runId}`]).toString().split('\n').filter(Boolean);
    for (const tag of [`${REGISTRY}/bench/${runId}/plain:latest`, `${REGISTRY}/kabuto/bench/bench-${runId}:latest`]) {
      try {
        execFileSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
      } catch {}
    }
    for (const id of [...new Set(ids)]) {
      try {
        execFileSync('docker', ['rmi', '-f', id], { stdio: 'ignore' });
      } catch {}
    }
    const nc = await connectNats(NATS_URL, 'bench-cleanup');
    const names = JSON.parse(new TextDecoder().decode((await nc.request('$JS.API.STREAM.NAMES', '{}')).data)) as { streams: string[] | null };
    for (const s of names.streams ?? []) if (s.startsWith(runId.toUpperCase()) || s.startsWith(`OBJ_${runId.toUpperCase()}`)) await nc.request(`$JS.API.STREAM.DELETE.${s}`, '');
    await nc.drain();
    await run.cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
