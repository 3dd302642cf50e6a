/**
 * Source-cache benchmark: cold request vs the same dependencies again (warm cache), for an npm
 * project with ~200 dependencies and a gomod project, and bundle download throughput.
 *
 * Runs the service in-process (API + worker) on the PostgreSQL and NATS of `deploy/local/infra.sh`
 * with its own schema, NATS prefix and data directory; upstreams are a local fixture server (npm
 * registry + GOPROXY) serving packages made here, measured twice: answering at once, and with a
 * delay per upstream request (BENCH_UPSTREAM_LATENCY_MS, default "0,25") modelling a registry
 * across a network. Each latency starts from an empty cache.
 *
 *   eval "$(deploy/local/infra.sh env)" && node --import tsx bench/source-cache/run.ts
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { identitySigner } from '@dockyard/kit';
import { testEnv } from '@dockyard/kit/testing';
import { buildSourceCacheApp, dropStreams } from '../../services/source-cache/src/app.js';
import { loadSourceCacheConfig } from '../../services/source-cache/src/config.js';
import { makeRepo, removeTempDirs, Upstream } from '../../services/source-cache/test/fixtures.js';

const NPM_DEPS = Number(process.env.BENCH_NPM_DEPS ?? 200);
const GO_MODULES = Number(process.env.BENCH_GO_MODULES ?? 40);
const LATENCIES = (process.env.BENCH_UPSTREAM_LATENCY_MS ?? '0,25').split(',').map(Number);
const BIG_MB = Number(process.env.BENCH_BUNDLE_MB ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const user = { id: 'u-bench', login: 'bench', admin: false, approved: true, groups: [], roles: [] };

async function main() {
  const upstream = await new Upstream().start();
  process.stdout.write(`making fixtures: ${NPM_DEPS} npm packages, ${GO_MODULES} Go modules, a ${BIG_MB} MiB repository\n`);
  const packages: Record<string, unknown> = { '': { name: 'bench-web', version: '1.0.0' } };
  for (let i = 0; i < NPM_DEPS; i++) {
    const name = i % 10 === 0 ? `@bench/pkg-${i}` : `pkg-${i}`;
    packages[`node_modules/${name}`] = await upstream.npm(name, `1.${i}.0`);
  }
  const npmRepo = makeRepo({ 'package.json': JSON.stringify({ name: 'bench-web', version: '1.0.0' }), 'package-lock.json': JSON.stringify({ name: 'bench-web', version: '1.0.0', lockfileVersion: 3, packages }) });
  let sum = '';
  let require = '';
  for (let i = 0; i < GO_MODULES; i++) {
    const mod = `example.org/bench/Mod${i}`;
    sum += await upstream.go(mod, `v1.${i}.0`);
    require += `\t${mod} v1.${i}.0\n`;
  }
  const goRepo = makeRepo({ 'go.mod': `module example.org/bench/app\n\ngo 1.21\n\nrequire (\n${require})\n`, 'go.sum': sum, 'main.go': 'package main\n\nfunc main() {}\n' });
  const bigRepo = makeRepo({ 'data.bin': randomBytes(BIG_MB * 1024 * 1024).toString('base64').slice(0, BIG_MB * 1024 * 1024) });

  const env = testEnv();
  const config = loadSourceCacheConfig(
    env.serviceEnv('source-cache', {
      DOCKYARD_GIT_ALLOW: 'file:',
      DOCKYARD_LOG_LEVEL: 'warn',
      DOCKYARD_CACHITO_MAX_REPO_MB: String(BIG_MB * 4),
      DOCKYARD_NPM_REGISTRY: `${upstream.base}/npm`,
      DOCKYARD_GOPROXY: `${upstream.base}/goproxy`,
      DOCKYARD_PYPI_INDEX: `${upstream.base}/pypi/simple`,
      DOCKYARD_CACHITO_PKG_MANAGERS: 'gomod,npm',
    }),
  );
  const app = await buildSourceCacheApp(config);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const headers = { 'x-dockyard-identity': identitySigner(env.env.DOCKYARD_INTERNAL_SECRET, 3_600_000)(user), 'content-type': 'application/json' };
  const results: Record<string, unknown> = {};
  try {
    const request = async (repo: { url: string; ref: string }, pm: string) => {
      const t0 = performance.now();
      const res = await fetch(`${base}/api/v1/requests`, { method: 'POST', headers, body: JSON.stringify({ repo: repo.url, ref: repo.ref, pkg_managers: pm ? [pm] : [] }) });
      const { id } = (await res.json()) as { id: number };
      for (;;) {
        const r = (await (await fetch(`${base}/api/v1/requests/${id}`, { headers })).json()) as { state: string; state_reason: string; dependencies: unknown[] };
        if (r.state === 'complete') return { id, ms: performance.now() - t0, deps: r.dependencies.length };
        if (r.state !== 'in_progress') throw new Error(`request ${id} ${r.state}: ${r.state_reason}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    // One request first, so process warm-up (module loading, JIT, connections) counts in no figure.
    await request(makeRepo({ 'README': 'warm-up\n' }), '');
    const rows: string[][] = [];
    for (const latency of LATENCIES) {
      upstream.latencyMs = latency;
      // A fresh cache for each latency: the cold request must really fetch.
      await rm(app.sourceCache.cache.root, { recursive: true, force: true });
      for (const [name, repo, pm, prefix] of [['npm', npmRepo, 'npm', '/npm/'], ['gomod', goRepo, 'gomod', '/goproxy/']] as const) {
        const label = `${name}, upstream +${latency} ms`;
        const before = upstream.count(prefix);
        const cold = await request(repo, pm);
        const coldFetches = upstream.count(prefix) - before;
        const warm: number[] = [];
        for (let i = 0; i < ROUNDS; i++) warm.push((await request(repo, pm)).ms);
        const warmFetches = upstream.count(prefix) - before - coldFetches;
        const warmMedian = [...warm].sort((a, b) => a - b)[Math.floor(warm.length / 2)];
        results[label] = { deps: cold.deps, coldMs: cold.ms, warmMs: warm, coldFetches, warmFetches, ratio: warmMedian / cold.ms };
        rows.push([label, String(cold.deps), cold.ms.toFixed(0), warmMedian.toFixed(0), (warmMedian / cold.ms).toFixed(2), String(coldFetches), String(warmFetches)]);
      }
    }
    upstream.latencyMs = 0;
    // The same work with no dependencies: what a request costs regardless of the cache (clone, bundle, bookkeeping).
    const floor = await request(npmRepo, '');
    rows.push(['source only', '0', floor.ms.toFixed(0), '-', '-', '0', '0']);
    results.sourceOnlyMs = floor.ms;

    process.stdout.write(`\n${['project', 'deps', 'cold ms', 'warm ms (median)', 'warm/cold', 'upstream GETs cold', 'upstream GETs warm'].join(' | ')}\n`);
    for (const r of rows) process.stdout.write(`${r.join(' | ')}\n`);

    const big = await request(bigRepo, '');
    const speeds: number[] = [];
    let size = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      const res = await fetch(`${base}/api/v1/requests/${big.id}/download`, { headers });
      size = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) size += chunk.length;
      speeds.push(size / 1024 / 1024 / ((performance.now() - t0) / 1000));
    }
    results.download = { bytes: size, mibPerSecond: speeds };
    process.stdout.write(`\nbundle download (${(size / 1024 / 1024).toFixed(1)} MiB, checksum verified before sending): ${speeds.map((s) => s.toFixed(0)).join(', ')} MiB/s\n`);
    const out = path.join(process.cwd(), 'bench', 'results');
    try {
      mkdirSync(out, { recursive: true });
      writeFileSync(path.join(out, `source-cache-${Date.now()}.json`), JSON.stringify({ config: { NPM_DEPS, GO_MODULES, LATENCIES, BIG_MB, ROUNDS }, results }, null, 2));
    } catch {}
  } finally {
    await dropStreams(app);
    await app.close();
    await env.cleanup();
    await upstream.stop();
    removeTempDirs();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
