/**
 * bench/console: the web console's cold first load from the gateway, in Chromium.
 *
 * Starts the whole platform (kit startStack: every service and the gateway on free ports, PGlite,
 * its own NATS prefix; needs NATS, dockerd, the registry: `deploy/local/infra.sh up`), builds the
 * bundle if missing, then BENCH_RUNS (10) times, each in a FRESH browser context (empty cache,
 * no cookies), for three pages in alternating order:
 *   - signin:  `/` without a credential -> the sign-in form is shown
 *   - apps:    `/#/apps` with an API token in localStorage -> the apps table is shown (whoami +
 *              /apps + /namespaces answered and rendered)
 *   - docs:    `/docs` (the gateway's Swagger UI) -> its operations are shown, a reference point
 * and reports navigation start -> load event and -> first page content visible (median, p90),
 * plus the JS/CSS bundle size raw and gzip. Issue 8's target: first load < 1 s.
 * Usage: eval "$(deploy/local/infra.sh env)" && node --import tsx bench/console/run.ts
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium, type Browser } from 'playwright-core';
import { startConsoleStack } from './stack.js';

const root = path.resolve(import.meta.dirname, '../..');
const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const dist = path.join(root, 'console/dist');

if (!existsSync(path.join(dist, 'index.html'))) execFileSync('pnpm', ['--filter', '@dockyard/console', 'run', 'generate'], { cwd: root, stdio: 'inherit' });

const assets = readdirSync(path.join(dist, 'assets')).map((f) => {
  const buf = readFileSync(path.join(dist, 'assets', f));
  return { file: f, raw: statSync(path.join(dist, 'assets', f)).size, gzip: gzipSync(buf, { level: 9 }).length };
});
const sum = (ext: string, k: 'raw' | 'gzip') => assets.filter((a) => a.file.endsWith(ext)).reduce((n, a) => n + a[k], 0);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.9) - 1)];

// Records when a selector first matches, in performance.now() time (navigation start = 0).
const watcher = (selector: string) => `
  (() => {
    const check = () => { if (!window.__visible && document.querySelector(${JSON.stringify(selector)})) { window.__visible = performance.now(); } };
    new MutationObserver(check).observe(document, { childList: true, subtree: true });
    document.addEventListener('DOMContentLoaded', check);
  })();`;

async function measure(browser: Browser, url: string, selector: string, token?: string) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  if (token) await context.addInitScript(`localStorage.setItem('dockyard.token', ${JSON.stringify(token)})`);
  await context.addInitScript(watcher(selector));
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector(selector, { timeout: 30_000 });
  await page.waitForFunction('window.__visible !== undefined');
  const r = (await page.evaluate(`(() => { const n = performance.getEntriesByType('navigation')[0]; return { load: n.loadEventEnd, visible: window.__visible, bytes: performance.getEntriesByType('resource').reduce((s, e) => s + (e.transferSize || 0), n.transferSize || 0) }; })()`)) as { load: number; visible: number; bytes: number };
  await context.close();
  return r;
}

const stack = await startConsoleStack();
let browser: Browser | undefined;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const targets = {
    signin: () => measure(browser!, `${stack.base}/`, '#password-form'),
    apps: () => measure(browser!, `${stack.base}/#/apps`, '#apps table, #apps p', stack.adminToken),
    docs: () => measure(browser!, `${stack.base}/docs`, '.opblock'),
  };
  const names = Object.keys(targets) as (keyof typeof targets)[];
  for (const name of names) await targets[name](); // warm the server side (not the browser: fresh contexts)
  const results: Record<string, { load: number; visible: number; bytes: number }[]> = { signin: [], apps: [], docs: [] };
  for (let i = 0; i < RUNS; i++) {
    for (const name of i % 2 ? [...names].reverse() : names) results[name].push(await targets[name]());
  }
  const load = os.loadavg();
  console.log(`\nconsole bundle: JS ${sum('.js', 'raw')} B raw, ${sum('.js', 'gzip')} B gzip; CSS ${sum('.css', 'raw')} B raw, ${sum('.css', 'gzip')} B gzip`);
  console.log(`cold first load, ${RUNS} fresh browser contexts each (ms from navigation start):`);
  console.log('page     load median  load p90  visible median  visible p90  bytes transferred');
  for (const name of names) {
    const rs = results[name];
    const l = rs.map((r) => r.load);
    const v = rs.map((r) => r.visible);
    console.log(`${name.padEnd(8)} ${median(l).toFixed(0).padStart(11)} ${p90(l).toFixed(0).padStart(9)} ${median(v).toFixed(0).padStart(15)} ${p90(v).toFixed(0).padStart(12)} ${String(median(rs.map((r) => r.bytes))).padStart(18)}`);
  }
  const ratio = median(results.apps.map((r) => r.visible)) / median(results.docs.map((r) => r.visible));
  console.log(`apps visible / Swagger UI visible (median): ${ratio.toFixed(2)}`);
  console.log(`target (first load < 1 s): ${median(results.apps.map((r) => r.visible)) < 1000 && median(results.signin.map((r) => r.visible)) < 1000 ? 'met' : 'NOT met'}`);
  console.log(`load average at the end: ${load.map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} cores, shared)`);
  mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  const out = path.join(root, `bench/results/console-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify({ runs: RUNS, assets, results, loadavg: load }, null, 2));
  console.log(`raw: ${out}`);
} finally {
  await browser?.close();
  await stack.stop();
}
