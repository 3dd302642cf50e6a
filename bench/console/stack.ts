import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, infra, type Stack } from '@dockyard/kit/testing';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');

/**
 * The platform for this file, as kit's startStack starts it (stack.sh on its own ports, run dir,
 * data dir and NATS prefix, PGlite, test identities seeded), but patient: on a machine busy with
 * other helpers' test runs the services can take longer than stack.sh's own 120 s readiness wait,
 * so `stack.sh up` (idempotent: it keeps what already runs) is called again, up to 3 times, before
 * giving up. CONSOLE_TEST_STACK (JSON `{"base", "adminToken", "dir"}` of a running stack started
 * with DOCKYARD_GIT_ALLOW=127.0.0.1) reuses one while working on the console.
 */
export async function startPatientStack(): Promise<Stack> {
  if (process.env.CONSOLE_TEST_STACK) {
    const s = JSON.parse(process.env.CONSOLE_TEST_STACK) as Pick<Stack, 'base' | 'adminToken' | 'dir'>;
    return { ...s, gatewayPort: Number(new URL(s.base).port), portBase: 0, internalSecret: '', env: {}, stop: async () => undefined };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-console-'));
  const gatewayPort = await freePort();
  const portBase = 20000 + Math.floor(Math.random() * 10000);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_OPTIONS: '',
    DATABASE_URL: '',
    DOCKYARD_NATS_URL: infra().natsUrl,
    DOCKYARD_RUN_DIR: path.join(dir, 'run'),
    DOCKYARD_DATA_DIR: path.join(dir, 'data'),
    DOCKYARD_STACK_PORT_BASE: String(portBase),
    DOCKYARD_GATEWAY_PORT: String(gatewayPort),
    DOCKYARD_GATEWAY_HOST: '127.0.0.1',
    DOCKYARD_NATS_PREFIX: `console${process.pid}${randomBytes(2).toString('hex')}.`,
    DOCKYARD_SEED_TEST_USERS: '1',
    DOCKYARD_GIT_ALLOW: '127.0.0.1',
    // One gateway process is plenty for one browser, and starts faster on a busy machine.
    DOCKYARD_GATEWAY_WORKERS: '1',
  };
  const script = path.join(root, 'deploy/local/stack.sh');
  const stop = async () => {
    await run(script, ['down'], { env }).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const { stdout } = await run(script, ['up'], { env, timeout: 170_000 });
      const adminToken = /Admin token:\s+(\S+)/.exec(stdout)?.[1];
      if (!adminToken) throw new Error(`stack.sh up printed no admin token:\n${stdout}`);
      const internalSecret = readFileSync(path.join(dir, 'run/internal-secret'), 'utf8').trim();
      return { base: `http://127.0.0.1:${gatewayPort}`, gatewayPort, portBase, adminToken, internalSecret, dir, env, stop };
    } catch (err) {
      lastError = err;
      console.warn(`stack.sh up, attempt ${attempt}: ${(err as Error).message.slice(0, 300)}`);
    }
  }
  await stop();
  throw lastError;
}

