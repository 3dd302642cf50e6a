/**
 * CLI start-up time: `dockyard --help` and `dockyard whoami --json` (one request to a tiny local
 * HTTP server answering /auth/whoami, so the gateway's own time is not in the figure), each run as
 * a fresh process N times (BENCH_N, default 15), in alternating order, against `node -e ''` (Node's
 * own start-up) as the baseline. Prints median / p90 in ms and the ratios to the baseline.
 *
 *   node --import tsx bench/cli/run.ts
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const bin = path.join(root, 'cli/bin/dockyard.js');
const N = Number(process.env.BENCH_N ?? 15);

const server = http.createServer((req, res) => {
  if (req.url === '/auth/whoami' && req.headers.authorization === 'Bearer bench') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'u1', login: 'bench', admin: false, approved: true, groups: [] }));
  } else {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end('{"error":"Token not found"}');
  }
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as import('node:net').AddressInfo).port;
const home = mkdtempSync(path.join(os.tmpdir(), 'dockyard-bench-cli-'));
const env = { PATH: process.env.PATH, HOME: home, DOCKYARD_URL: `http://127.0.0.1:${port}`, DOCKYARD_TOKEN: 'bench' };

const targets: Record<string, string[]> = {
  'node -e ""': ['-e', ''],
  'dockyard --help': [bin, '--help'],
  'dockyard whoami --json': [bin, 'whoami', '--json'],
  'node --import tsx main.ts --help': ['--import', 'tsx', path.join(root, 'cli/src/main.ts'), '--help'],
};
const times: Record<string, number[]> = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));

// Children run asynchronously: the local server lives in this process's event loop.
const once = (args: string[]) =>
  new Promise<number>((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    child.stdout.resume();
    child.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`${args.join(' ')}: exit ${code} ${err}`))));
  });

const names = Object.keys(targets);
for (let i = 0; i < N; i++) {
  const order = i % 2 ? [...names].reverse() : names;
  for (const name of order) times[name].push(await once(targets[name]));
}
server.close();
rmSync(home, { recursive: true, force: true });

const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const base = q(times['node -e ""'], 0.5);
console.log(`CLI start-up, ${N} runs each, alternating order (${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')})`);
console.log(`${'command'.padEnd(34)} ${'median ms'.padStart(10)} ${'p90 ms'.padStart(8)} ${'x node'.padStart(7)}`);
for (const name of names) {
  const med = q(times[name], 0.5);
  console.log(`${name.padEnd(34)} ${med.toFixed(0).padStart(10)} ${q(times[name], 0.9).toFixed(0).padStart(8)} ${(med / base).toFixed(2).padStart(7)}`);
}
