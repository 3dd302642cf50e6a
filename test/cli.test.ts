/**
 * The `dockyard` CLI end to end: the whole platform (startStack), the CLI run as a child process
 * (`cli/bin/dockyard.js`, the package bin) with HOME and XDG_CONFIG_HOME in a temporary folder, as a
 * user would: login, ECR apps + builds + permissions, Kabuto image -> pipeline -> job -> logs ->
 * result, a Cachito request -> bundle, REE base images, exit codes and --json.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, gitDaemon, startStack, until, type Stack } from '@dockyard/kit/testing';

const run = promisify(execFile);
/** Unique per run, so the file can also drive a stack that is reused (DOCKYARD_CLI_TEST_URL). */
const ns = `cli${Date.now().toString(36)}`;
const root = path.resolve(import.meta.dirname, '..');
const bin = path.join(root, 'cli/bin/dockyard.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

describe('dockyard CLI against the running platform', () => {
  let stack: Stack;
  let dir = '';
  let daemon: Awaited<ReturnType<typeof gitDaemon>> | undefined;
  let home = '';
  let home2 = '';

  /** Runs the CLI with `env` on top of a clean environment (no DOCKYARD_* of the test runner). */
  function dy(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; home?: string } = {}): Promise<Result> {
    const h = opts.home ?? home;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: h,
      XDG_CONFIG_HOME: path.join(h, 'xdg'),
      DOCKYARD_POLL_MS: '300',
      ...opts.env,
    };
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [bin, ...args], { cwd: dir, env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(opts.input ?? '');
    });
  }
  /** The CLI with --json; its stdout parsed (and the exit code checked). */
  async function dyJson<T = any>(args: string[], code = 0, opts: Parameters<typeof dy>[1] = {}): Promise<T> {
    const r = await dy(['--json', ...args], opts);
    if (r.code !== code) throw new Error(`dockyard ${args.join(' ')}: exit ${r.code} (wanted ${code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  beforeAll(async () => {
    // One gateway worker: on a busy 2-core machine two workers starting at once both ran past
    // Fastify's plugin timeout and restarted in a loop; one is the same code path.
    const stackEnv = { DOCKYARD_GIT_ALLOW: '127.0.0.1', DOCKYARD_GATEWAY_WORKERS: '1' };
    // DOCKYARD_CLI_TEST_URL: drive a stack already running (with DOCKYARD_SEED_TEST_USERS=1 and
    // DOCKYARD_GIT_ALLOW=127.0.0.1) instead of starting one; for working on the CLI.
    const reuse = process.env.DOCKYARD_CLI_TEST_URL;
    stack = reuse
      ? ({ base: reuse, dir: mkdtempSync(path.join(os.tmpdir(), 'dockyard-cli-e2e-')), stop: async () => undefined } as unknown as Stack)
      : await startStack(stackEnv).catch((err) => {
          // stack.sh gives the stack 120 s; on a machine busy with other test runs that can be too
          // little (seen at load averages of 30-60). One more attempt before failing.
          console.warn(`startStack failed, trying once more: ${(err as Error).message.split('\n')[0]}`);
          return startStack(stackEnv);
        });
    dir = stack.dir;
    home = path.join(dir, 'home1');
    home2 = path.join(dir, 'home2');
    mkdirSync(home, { recursive: true });
    mkdirSync(home2, { recursive: true });
  }, 400_000);
  afterAll(async () => {
    daemon?.stop();
    // The images this file made: the ECR build's and the Kabuto image's (engine-side tags).
    for (const ref of [`127.0.0.1:5000/${ns}/hello:1.0`, '127.0.0.1:5000/kabuto/testuser/clie2e:latest']) await run('docker', ['rmi', ref]).catch(() => undefined);
    await stack?.stop();
    if (process.env.DOCKYARD_CLI_TEST_URL && dir) rmSync(dir, { recursive: true, force: true });
  });

  it('login stores the token 0600 (dir 0700); whoami; exit codes for 401, 404, bad usage, unreachable', async () => {
    const login = await dy(['--url', stack.base, 'login', '--token-stdin'], { input: 'testuser_token\n' });
    expect(login).toMatchObject({ code: 0 });
    expect(login.stdout).toContain('as testuser');
    const file = path.join(home, 'xdg/dockyard/config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const stored = JSON.parse(readFileSync(file, 'utf8'));
    expect(stored).toMatchObject({ url: stack.base, token: 'testuser_token', login: 'testuser' });
    expect(await dyJson(['whoami'])).toMatchObject({ login: 'testuser', url: stack.base });
    // testuser2 signs in with a login and password? The seeded ECR identities have tokens only: env override instead.
    expect(await dyJson(['whoami'], 0, { home: home2, env: { DOCKYARD_URL: stack.base, DOCKYARD_TOKEN: 'testuser2_token' } })).toMatchObject({ login: 'testuser2' });

    const bad = await dyJson(['whoami'], 3, { home: home2, env: { DOCKYARD_URL: stack.base, DOCKYARD_TOKEN: 'no_such_token' } });
    expect(bad).toMatchObject({ exitCode: 3, status: 401 });
    expect((await dy(['login', '--token-stdin'], { home: home2, input: 'no_such_token', env: { DOCKYARD_URL: stack.base } })).code).toBe(3);
    expect(await dyJson(['pipeline', 'get', '999999'], 4)).toMatchObject({ exitCode: 4, status: 404 });
    const usage = await dy(['apps', 'get', 'only/two']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('NAMESPACE/REPOSITORY/VERSION');
    expect((await dy(['frobnicate'])).code).toBe(2);
    const nowhere = await freePort();
    expect(await dyJson(['--url', `http://127.0.0.1:${nowhere}`, 'whoami'], 6, { env: { DOCKYARD_TOKEN: 'testuser_token' } })).toMatchObject({ exitCode: 6 });
    // A credentials file others may read is refused.
    const { chmodSync } = await import('node:fs');
    chmodSync(file, 0o644);
    const loose = await dy(['whoami']);
    expect(loose.code).toBe(3);
    expect(loose.stderr).toContain('chmod 600');
    chmodSync(file, 0o600);
  }, 240_000);

  it('ECR: apps submit from a git daemon -> list/get -> build start -> status -f SUCCESS; perms grant/revoke seen by testuser2', async () => {
    const repos = path.join(dir, 'git');
    const work = path.join(repos, 'hello');
    mkdirSync(work, { recursive: true });
    writeFileSync(path.join(work, 'Dockerfile'), 'FROM dockyard/busybox:latest\nRUN echo hi > /greeting\n');
    const git = (...args: string[]) => run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args]);
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-q', '-m', 'hello');
    daemon = await gitDaemon(repos);

    const app = await dyJson(['apps', 'submit', `${ns}/hello/1.0`, '--git', daemon.url('hello'), '--branch', 'main', '--arch', 'linux/amd64', '--description', 'from the cli']);
    expect(app).toMatchObject({ namespace: ns, name: 'hello', version: '1.0', owner: 'testuser' });
    const list = await dyJson<{ namespace: string; name: string; version: string }[]>(['apps', 'list']);
    expect(list).toEqual(expect.arrayContaining([expect.objectContaining({ namespace: ns, name: 'hello', version: '1.0' })]));
    expect((await dy(['apps', 'list'])).stdout).toContain(`${ns}/hello/1.0`);
    expect(await dyJson(['apps', 'get', `${ns}/hello/1.0`])).toMatchObject({ source: expect.objectContaining({ branch: 'main' }) });

    expect(await dyJson(['build', 'start', `${ns}/hello/1.0`])).toMatchObject({ build_number: 1 });
    const build = await dyJson(['build', 'status', `${ns}/hello/1.0`, '-f']);
    expect(build).toMatchObject({ result: 'SUCCESS', building: false });
    expect(build.image).toContain(`${ns}/hello:1.0`);
    expect((await dy(['build', 'logs', `${ns}/hello/1.0`])).stdout).toMatch(/Successfully built|Step 2\/2/);

    // Permissions: testuser2 is refused, granted READ, then revoked again.
    const as2 = { home: home2, env: { DOCKYARD_URL: stack.base, DOCKYARD_TOKEN: 'testuser2_token' } };
    expect((await dy(['apps', 'get', `${ns}/hello/1.0`], as2)).code).toBe(3);
    expect((await dy(['perms', 'grant', `${ns}/hello`, '--user', 'testuser2', '-p', 'READ'])).code).toBe(0);
    const grants = await dyJson<{ grantee: string; permission: string }[]>(['perms', 'get', `${ns}/hello`]);
    expect(grants).toEqual(expect.arrayContaining([expect.objectContaining({ grantee: 'testuser2', permission: 'READ' })]));
    await until(async () => ((await dy(['apps', 'get', `${ns}/hello/1.0`], as2)).code === 0 ? true : undefined), 'testuser2 may read', 30_000, 500);
    expect((await dy(['perms', 'revoke', `${ns}/hello`, '--user', 'testuser2'])).code).toBe(0);
    await until(async () => ((await dy(['apps', 'get', `${ns}/hello/1.0`], as2)).code === 3 ? true : undefined), 'testuser2 refused again', 30_000, 500);
  }, 300_000);

  it('Kabuto: image build with an attachment -> pipeline create -> job add with a file -> submit -> logs -f -> result unzipped', async () => {
    const ctxDir = path.join(dir, 'img');
    mkdirSync(ctxDir, { recursive: true });
    writeFileSync(path.join(ctxDir, 'Dockerfile'), 'FROM dockyard/busybox:latest\nCOPY stamp.txt /stamp.txt\n');
    writeFileSync(path.join(ctxDir, 'stamp.txt'), 'built-by-cli\n');
    writeFileSync(path.join(ctxDir, 'input.txt'), 'from the inbox\n');
    const image = await dyJson(['image', 'build', '-n', 'clie2e', '-f', path.join(ctxDir, 'Dockerfile'), path.join(ctxDir, 'stamp.txt')]);
    expect(image).toMatchObject({ state: 'SUCCESS' });
    const { id: pipeline } = await dyJson<{ id: number }>(['pipeline', 'create', 'clie2e']);
    const { id: job } = await dyJson<{ id: number }>([
      'job', 'add', String(pipeline), '-i', String(image.id),
      '-c', 'cat /stamp.txt /inbox/file1 > /outbox/out.txt; echo line-from-the-job',
      '-a', `file1=${path.join(ctxDir, 'input.txt')}`,
    ]);
    expect(await dyJson(['pipeline', 'submit', String(pipeline)])).toEqual({ [String(job)]: 'in_queue' });
    const logs = await dy(['job', 'logs', String(job), '-f']);
    expect(logs).toMatchObject({ code: 0 });
    expect(logs.stdout).toContain('line-from-the-job');
    expect(await dyJson(['job', 'status', String(pipeline), String(job)])).toMatchObject({ state: 'done' });
    const zip = path.join(dir, 'results.zip');
    expect(await dyJson(['job', 'result', String(pipeline), String(job), '-o', zip])).toMatchObject({ file: zip });
    const { stdout } = await run('unzip', ['-p', zip, 'out.txt']);
    expect(stdout).toBe('built-by-cli\nfrom the inbox\n');
    expect((await dyJson(['pipeline', 'get', String(pipeline)])).jobs).toEqual([expect.objectContaining({ id: job, state: 'done' })]);
    // Not testuser2's: a 404, exit code 4.
    expect((await dy(['pipeline', 'get', String(pipeline)], { home: home2, env: { DOCKYARD_URL: stack.base, DOCKYARD_TOKEN: 'testuser2_token' } })).code).toBe(4);
  }, 240_000);

  it('Cachito: cache request of a local repository -> status -> download -> manifest; REE base images listed', async () => {
    const repos = path.join(dir, 'git');
    const work = path.join(repos, 'plain');
    mkdirSync(work, { recursive: true });
    writeFileSync(path.join(work, 'README'), 'no package manager here\n');
    const git = (...args: string[]) => run('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args]);
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-q', '-m', 'plain');
    const ref = (await git('rev-parse', 'HEAD')).stdout.trim();
    daemon ??= await gitDaemon(repos);
    const created = await dyJson(['cache', 'request', '--repo', daemon.url('plain'), '--ref', ref, '-p', 'git-submodule']);
    expect(created).toMatchObject({ state: 'in_progress' });
    const done = await dyJson(['cache', 'status', String(created.id), '-f']);
    expect(done).toMatchObject({ id: created.id, state: 'complete' });
    const bundle = path.join(dir, 'bundle.tar.gz');
    expect(await dyJson(['cache', 'download', String(created.id), '-o', bundle])).toMatchObject({ file: bundle });
    const { stdout: entries } = await run('tar', ['tzf', bundle]);
    expect(entries).toMatch(/app\/README/);
    expect(await dyJson(['cache', 'manifest', String(created.id)])).toMatchObject({ metadata: expect.anything() });

    const images = await dyJson<{ name: string }[]>(['images', 'list']);
    expect(images.map((i) => i.name)).toEqual(expect.arrayContaining(['debian_12']));
    expect((await dy(['images', 'list'])).stdout).toContain('debian_12');
  }, 180_000);
});
