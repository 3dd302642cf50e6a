/**
 * Process service benchmark: one recording define of a small apt project, then two builds of the
 * same defined REE (the second finds the engine's layer cache). Starts the build and process
 * services in this process on the real PostgreSQL/NATS/Docker, like the tests, and prints the
 * figures. Run: eval "$(deploy/local/infra.sh env)" && node --import tsx bench/process/run.ts
 */
import { testEnv } from '@dockyard/kit/testing';
import { as, ended, removeImages, startServices, user, zipOf, form } from '../../services/process/test/helpers.js';

const env = testEnv();
const { app, build } = await startServices(env);
const alice = user('bench');
const rows: [string, number, string][] = [];

async function timed(label: string, url: string, zip: Buffer): Promise<{ uuid: string; total: number }> {
  const f = form(zip);
  const t0 = performance.now();
  const res = await app.inject({ method: 'POST', url, payload: f.payload, headers: { ...f.headers, ...as(env, alice) } });
  const answered = performance.now() - t0;
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  const { uuid } = res.json();
  const status = await ended(app, env, alice, uuid, 900_000);
  const total = performance.now() - t0;
  if (status.status !== 'processed') throw new Error(`${label} failed: ${status.reason}`);
  rows.push([`${label}: POST answered`, answered, 'ms']);
  rows.push([`${label}: processed`, total, 'ms']);
  return { uuid, total };
}

try {
  const dockerfile = `FROM dockyard/debian:bookworm\nLABEL dockyard.prefix=${env.id}.\nRUN apt-get update && apt-get install -y --no-install-recommends python3-six && rm -rf /var/lib/apt/lists/*\nCOPY app.py /app.py\n`;
  const project = await zipOf({ Dockerfile: dockerfile, 'app.py': 'import six\n' });
  const define = await timed('define', '/api/recording/create', project);
  const defined = (await app.inject({ url: `/api/process/download/${define.uuid}`, headers: as(env, alice) })).rawPayload;
  const first = await timed('build #1 (cold)', '/api/recording/build', defined);
  const second = await timed('build #2 (same REE, cached)', '/api/recording/build', defined);
  console.log('\nProcess service benchmark (one run; the machine is shared with other jobs)\n');
  for (const [name, value, unit] of rows) console.log(`${name.padEnd(44)} ${value.toFixed(0).padStart(8)} ${unit}`);
  console.log(`${'defined REE zip'.padEnd(44)} ${String(defined.length).padStart(8)} bytes`);
  console.log(`\nbuild #2 / build #1: ${(second.total / first.total).toFixed(2)}x`);
  console.log(`define / build #1:   ${(define.total / first.total).toFixed(2)}x`);
} finally {
  await app.close();
  await build.close();
  await removeImages(env);
  await env.cleanup();
}
