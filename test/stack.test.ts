/**
 * The README's run path: deploy/local/stack.sh (what `make up` ends with) starts the six services
 * on embedded PGlite and the gateway, and the gateway's /readyz reports all six ready. Runs on its
 * own ports, run dir, data dir and NATS prefix, so a stack already running here is left alone.
 */
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { gitDaemon, startStack, until, type Stack } from '@dockyard/kit/testing';

/** An internal identity token made by hand (HS256), to show services refuse forged and expired ones. */
function internalToken(secret: string, expiresInS: number): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const idn = { id: 'u-x', login: 'admin', admin: true, approved: true, groups: [], roles: [] };
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ idn, iss: 'dockyard-gateway', iat: now, exp: now + expiresInS })}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

const run = promisify(execFile);

describe('make up: the whole platform on one machine', () => {
  let stack: Stack;
  let base = '';
  let dir = '';
  let daemon: Awaited<ReturnType<typeof gitDaemon>> | undefined;
  afterAll(async () => {
    daemon?.stop();
    await stack?.stop();
  });

  it('starts every service and the gateway, all ready, and prints the admin token', async () => {
    // The ECR flow below submits from a git daemon on this machine.
    stack = await startStack({ DOCKYARD_GIT_ALLOW: '127.0.0.1' });
    ({ base, dir } = stack);
    const token = stack.adminToken;
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    const { checks } = (await ready.json()) as { checks: Record<string, { ok: boolean }> };
    for (const service of ['permissions', 'registry', 'build', 'execution', 'source-cache', 'process', 'nats']) expect(checks[service]).toEqual({ ok: true });
    const me = await fetch(`${base}/auth/whoami`, { headers: { authorization: `Bearer ${token}` } });
    expect(await me.json()).toMatchObject({ login: 'admin', admin: true });
    const testuser = await fetch(`${base}/auth/whoami`, { headers: { authorization: 'sage testuser_token' } });
    expect(await testuser.json()).toMatchObject({ login: 'testuser' });
    // The gateway's access log: one JSON line per request, flushed within half a second.
    await new Promise((r) => setTimeout(r, 800));
    const lines = readFileSync(path.join(dir, 'run/logs/stack-gateway.log'), 'utf8').split('\n').filter((l) => l.startsWith('{'));
    const access = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && l.url === '/auth/whoami');
    expect(access).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ level: 30, service: 'gateway', method: 'GET', status: 200, user: 'admin' }),
        expect.objectContaining({ status: 200, user: 'testuser' }),
      ]),
    );
  }, 180_000);

  // The services working together through the gateway, as a client of the original APIs would.
  it('Kabuto: builds an image from a Dockerfile, then runs a job in it with /inbox and /outbox', async () => {
    const headers = { authorization: 'sage testuser_token' };
    const dockerfile = 'FROM dockyard/busybox:latest\nRUN echo built-by-dockyard > /stamp\n';
    const image = await fetch(`${base}/image`, { method: 'POST', headers, body: new URLSearchParams({ name: 'e2e', dockerfile }) });
    expect(image.status).toBe(200);
    const { build_id } = (await image.json()) as { build_id: string };
    const built = await until(async () => {
      const state = (await (await fetch(`${base}/image/build/${build_id}`, { headers })).json()) as { state: string; id?: string; error?: string };
      return state.state === 'PENDING' ? undefined : state;
    }, 'image build');
    expect(built).toMatchObject({ state: 'SUCCESS' });

    const { id: pipeline } = (await (await fetch(`${base}/pipeline`, { method: 'POST', headers, body: new URLSearchParams({ name: 'e2e' }) })).json()) as { id: string };
    const form = new FormData();
    form.set('command', 'cat /stamp /inbox/file1 > /outbox/out.txt');
    form.set('image_id', String(built.id));
    form.set('attachments', new Blob(['from the inbox\n']), 'file1');
    const job = await fetch(`${base}/pipeline/${pipeline}/job`, { method: 'POST', headers, body: form });
    expect(job.status).toBe(200);
    const { id: jobId } = (await job.json()) as { id: string };
    expect((await fetch(`${base}/pipeline/${pipeline}/submit`, { method: 'POST', headers })).status).toBe(200);
    const finished = await until(async () => {
      const body = (await (await fetch(`${base}/pipeline/${pipeline}/job/${jobId}`, { headers })).json()) as Record<string, { state: string }>;
      const state = body[String(jobId)].state;
      return ['done', 'failed', 'killed'].includes(state) ? state : undefined;
    }, 'job');
    expect(finished).toBe('done');
    const zip = Buffer.from(await (await fetch(`${base}/pipeline/${pipeline}/job/${jobId}?result`, { headers })).arrayBuffer());
    writeFileSync(path.join(dir, 'result.zip'), zip);
    const { stdout } = await run('unzip', ['-p', path.join(dir, 'result.zip'), 'out.txt']);
    expect(stdout).toBe('built-by-dockyard\nfrom the inbox\n');
    // Another user sees nothing of it.
    expect((await fetch(`${base}/pipeline/${pipeline}`, { headers: { authorization: 'sage testuser2_token' } })).status).toBe(404);
  }, 240_000);

  it('ECR: submits an app from git, builds it with the recorded commit and reports the build', async () => {
    const repos = path.join(dir, 'git');
    const work = path.join(repos, 'hello');
    mkdirSync(work, { recursive: true });
    writeFileSync(path.join(work, 'Dockerfile'), 'FROM dockyard/busybox:latest\nARG GREETING\nRUN echo "$GREETING" > /greeting\n');
    const git = (...args: string[]) => run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args]);
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-q', '-m', 'hello');
    daemon = await gitDaemon(repos);

    const headers = { authorization: 'sage testuser_token' };
    const app = {
      description: 'end to end',
      source: { url: daemon.url('hello'), branch: 'main', build_args: { GREETING: 'hi' }, architectures: ['linux/amd64'] },
    };
    const submitted = await fetch(`${base}/apps/e2e/hello/1.0`, { method: 'POST', headers, body: JSON.stringify(app) });
    expect(submitted.status).toBe(200);
    expect(await submitted.json()).toMatchObject({ namespace: 'e2e', name: 'hello', version: '1.0', owner: 'testuser' });
    // Private until granted: another user is refused in ECR's words.
    const other = await fetch(`${base}/apps/e2e/hello/1.0`, { headers: { authorization: 'sage testuser2_token' } });
    expect(other.status).toBe(401);
    expect(await other.json()).toEqual({ error: 'Not authorized. (User testuser2 does not have permission READ for repository e2e/hello)' });

    const queued = await fetch(`${base}/builds/e2e/hello/1.0`, { method: 'POST', headers });
    expect(queued.status).toBe(200);
    expect(await queued.json()).toMatchObject({ build_number: 1 });
    const build = await until(async () => {
      const b = (await (await fetch(`${base}/builds/e2e/hello/1.0`, { headers })).json()) as { building: boolean; result: string | null; image?: string };
      return b.building ? undefined : b;
    }, 'ECR build');
    expect(build).toMatchObject({ result: 'SUCCESS', number: 1 });
    expect(build.image).toContain('e2e/hello:1.0');
    const log = await (await fetch(`${base}/builds/e2e/hello/1.0/logs`, { headers })).text();
    expect(log).toMatch(/Successfully built|Step 3\/3/);
  }, 240_000);

  it('services refuse a request that did not come through the gateway: no, forged or expired identity token', async () => {
    const { internalSecret: secret, portBase } = stack;
    const protectedPaths = ['/auth/whoami', '/apps', '/image', '/pipeline', '/api/v1/requests', '/api/process'];
    const tokens = { none: null, forged: internalToken('not-the-secret', 60), expired: internalToken(secret, -120), valid: internalToken(secret, 60) };
    for (const [i, url] of protectedPaths.entries()) {
      for (const [kind, token] of Object.entries(tokens)) {
        const res = await fetch(`http://127.0.0.1:${portBase + i + 1}${url}`, { headers: token ? { 'x-dockyard-identity': token } : {} });
        // A valid token proves the port and path are right, so the refusals are about the token.
        expect({ url, kind, status: res.status }).toEqual({ url, kind, status: kind === 'valid' ? 200 : 401 });
      }
    }
  });
});
