/**
 * Argument parsing and the requests each command sends, against a fake gateway (no network):
 * methods, paths, bodies, the Authorization header, --json output and exit codes.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../src/program.js';
import { fakeIo, json, type Seen } from './helpers.js';

describe('dockyard commands (fake gateway)', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  beforeEach(() => {
    home = mkdtempSync(path.join(os.tmpdir(), 'dockyard-cli-prog-'));
    env = { HOME: home, DOCKYARD_URL: 'http://gw.test:8080', DOCKYARD_TOKEN: 'tok', DOCKYARD_POLL_MS: '50' };
  });
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  it('apps get: GET with the bearer token, JSON passed through under --json', async () => {
    const f = fakeIo(env, () => json({ namespace: 'sage', name: 'simple', version: '1.0' }));
    expect(await run(['--json', 'apps', 'get', 'sage/simple/1.0'], f.io)).toBe(0);
    expect(f.seen[0]).toMatchObject({ method: 'GET', url: 'http://gw.test:8080/apps/sage/simple/1.0' });
    expect(f.seen[0].headers.authorization).toBe('Bearer tok');
    expect(JSON.parse(f.out())).toEqual({ namespace: 'sage', name: 'simple', version: '1.0' });
    // --json after the command works too.
    const g = fakeIo(env, () => json({ a: 1 }));
    expect(await run(['apps', 'get', 'sage/simple/1.0', '--json'], g.io)).toBe(0);
    expect(JSON.parse(g.out())).toEqual({ a: 1 });
  });

  it('usage errors exit 2 without a request: bad app reference, unknown command/option, missing option', async () => {
    for (const args of [['apps', 'get', 'sage/simple'], ['nope'], ['apps', 'list', '--bogus'], ['job', 'add', '1', '-c', 'true'], ['job', 'status', 'x', '1'], ['perms', 'grant', 'sage', '-p', 'READ'], ['cache', 'request', '--repo', 'r', '--ref', 'short']]) {
      const f = fakeIo(env, () => json({}));
      expect({ args, code: await run([...args], f.io) }).toEqual({ args, code: 2 });
      expect(f.seen).toEqual([]);
    }
    const f = fakeIo(env, () => json({}));
    expect(await run(['--json', 'apps', 'get', 'x'], f.io)).toBe(2);
    expect(JSON.parse(f.out())).toMatchObject({ exitCode: 2, error: expect.stringContaining('NAMESPACE/REPOSITORY/VERSION') });
  });

  it('maps HTTP refusals to exit codes with the server message: 401 -> 3, 404 -> 4, 400 -> 2, 500 -> 1', async () => {
    for (const [status, code] of [[401, 3], [403, 3], [404, 4], [400, 2], [500, 1]]) {
      const f = fakeIo(env, () => json({ error: `said ${status}` }, status));
      expect(await run(['pipeline', 'get', '7'], f.io)).toBe(code);
      expect(f.err()).toBe(`dockyard: said ${status}\n`);
      const g = fakeIo(env, () => json({ error: `said ${status}` }, status));
      expect(await run(['--json', 'pipeline', 'get', '7'], g.io)).toBe(code);
      expect(JSON.parse(g.out())).toEqual({ error: `said ${status}`, exitCode: code, status });
    }
  });

  it('perms grant/revoke send the ECR change document', async () => {
    const grants = [
      { granteeType: 'GROUP', grantee: 'AllUsers', permission: 'READ', resourceName: 'sage' },
      { granteeType: 'GROUP', grantee: 'AllUsers', permission: 'WRITE', resourceName: 'sage' },
      { granteeType: 'USER', grantee: 'me', permission: 'FULL_CONTROL', resourceName: 'sage' },
    ];
    const f = fakeIo(env, (req) => (req.method === 'GET' ? json(grants) : json({})));
    expect(await run(['perms', 'grant', 'sage/simple', '--user', 'bob', '-p', 'write'], f.io)).toBe(0);
    expect(await run(['perms', 'revoke', 'sage', '--public'], f.io)).toBe(0);
    expect(await run(['perms', 'revoke', 'sage', '--group', 'g', '-p', 'read'], f.io)).toBe(0);
    expect(await run(['perms', 'revoke', 'sage', '--all'], f.io)).toBe(0);
    expect(f.seen.map((s) => [s.method, s.url, s.body && JSON.parse(s.body)])).toEqual([
      ['PUT', 'http://gw.test:8080/permissions/sage/simple', { operation: 'add', granteeType: 'USER', grantee: 'bob', permission: 'WRITE' }],
      ['GET', 'http://gw.test:8080/permissions/sage', undefined],
      ['PUT', 'http://gw.test:8080/permissions/sage', { operation: 'delete', granteeType: 'GROUP', grantee: 'AllUsers', permission: 'READ' }],
      ['PUT', 'http://gw.test:8080/permissions/sage', { operation: 'delete', granteeType: 'GROUP', grantee: 'AllUsers', permission: 'WRITE' }],
      ['PUT', 'http://gw.test:8080/permissions/sage', { operation: 'delete', granteeType: 'GROUP', grantee: 'g', permission: 'READ' }],
      ['PUT', 'http://gw.test:8080/permissions/sage', { operation: 'delete' }],
    ]);
    // Nothing to revoke: exit 4.
    expect(await run(['perms', 'revoke', 'sage', '--user', 'nobody'], f.io)).toBe(4);
  });

  it('apps submit --git builds the app document; -f sends the file as YAML', async () => {
    const f = fakeIo(env, () => json({ namespace: 'n', name: 'r', version: '1', owner: 'me' }));
    expect(await run(['apps', 'submit', 'n/r/1', '--git', 'git://h/x', '--branch', 'main', '--build-arg', 'A=b=c', '--arch', 'linux/amd64', '--force'], f.io)).toBe(0);
    expect(f.seen[0].url).toBe('http://gw.test:8080/apps/n/r/1?force=true');
    expect(JSON.parse(f.seen[0].body!)).toEqual({ source: { url: 'git://h/x', branch: 'main', architectures: ['linux/amd64'], build_args: { A: 'b=c' } } });
    const file = path.join(home, 'app.yaml');
    writeFileSync(file, 'source:\n  url: git://h/x\n');
    expect(await run(['apps', 'submit', 'n/r/1', '-f', file], f.io)).toBe(0);
    expect(f.seen[1]).toMatchObject({ body: 'source:\n  url: git://h/x\n', headers: expect.objectContaining({ 'content-type': 'application/yaml' }) });
  });

  it('apps list follows ECR continue pages', async () => {
    const f = fakeIo(env, (req: Seen) =>
      req.url.includes('continue=')
        ? json({ pagination: { next: null }, data: [{ namespace: 'a', name: 'b', version: '2' }] })
        : json({ pagination: { next: '/apps?limit=1&continue=abc' }, data: [{ namespace: 'a', name: 'b', version: '1' }] }),
    );
    expect(await run(['--json', 'apps', 'list', '--limit', '1'], f.io)).toBe(0);
    expect(JSON.parse(f.out()).map((a: { version: string }) => a.version)).toEqual(['1', '2']);
    expect(f.seen[1].url).toBe('http://gw.test:8080/apps?limit=1&continue=abc');
  });

  it('build status -f waits until the build ends: exit 0 on SUCCESS, 5 on FAILURE', async () => {
    let calls = 0;
    const f = fakeIo(env, () => json(++calls < 3 ? { building: true, result: null } : { building: false, result: 'SUCCESS', number: 1 }));
    expect(await run(['--json', 'build', 'status', 'a/b/1', '-f'], f.io)).toBe(0);
    expect(calls).toBe(3);
    expect(JSON.parse(f.out())).toMatchObject({ result: 'SUCCESS' });
    const g = fakeIo(env, () => json({ building: false, result: 'FAILURE', number: 2 }));
    expect(await run(['build', 'status', 'a/b/1'], g.io)).toBe(5);
    expect(g.err()).toMatch(/ended FAILURE/);
  });

  it('job status: failed job exits 5; job logs -f reads the SSE stream to its end event', async () => {
    const f = fakeIo(env, () => json({ 3: { id: 3, state: 'failed', reason: 'exit code 1', command: 'false' } }));
    expect(await run(['job', 'status', '1', '3'], f.io)).toBe(5);
    const sse = 'id: 1\nevent: log\ndata: {"id":1,"job":3,"logline":"hello"}\n\nid: 2\nevent: log\ndata: {"id":2,"job":3,"logline":"world"}\n\nevent: end\ndata: {"id":3,"state":"done"}\n\n';
    const g = fakeIo(env, () => new Response(sse, { headers: { 'content-type': 'text/event-stream' } }));
    expect(await run(['job', 'logs', '3', '-f'], g.io)).toBe(0);
    expect(g.seen[0].url).toBe('http://gw.test:8080/execution/3/logs/stream');
    expect(g.out()).toBe('hello\nworld\n');
    const h = fakeIo(env, () => new Response(sse.replace('"done"', '"killed"')));
    expect(await run(['--json', 'job', 'logs', '3', '-f'], h.io)).toBe(5);
    expect(JSON.parse(h.out().split('\n')[0])).toEqual({ lines: [{ id: 1, job: 3, logline: 'hello' }, { id: 2, job: 3, logline: 'world' }], state: 'killed' });
  });

  it('login --token-stdin stores url, token and login in a 0600 file; whoami reads it back; logout removes it', async () => {
    const base = { HOME: home };
    const f = fakeIo(base, (req) => (req.headers.authorization === 'Bearer s3cret' ? json({ id: 'u1', login: 'me', admin: false, approved: true, groups: [] }) : json({ error: 'Token not found' }, 401)), 's3cret\n');
    expect(await run(['--url', 'gw.test:9', 'login', '--token-stdin'], f.io)).toBe(0);
    const file = path.join(home, '.config/dockyard/config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(f.out()).toContain('Signed in to http://gw.test:9 as me');
    const g = fakeIo(base, (req) => json({ id: 'u1', login: req.headers.authorization === 'Bearer s3cret' ? 'me' : '?', admin: false, approved: true, groups: [] }));
    expect(await run(['--json', 'whoami'], g.io)).toBe(0);
    expect(JSON.parse(g.out())).toMatchObject({ login: 'me', url: 'http://gw.test:9' });
    expect(await run(['logout'], g.io)).toBe(0);
    expect(() => statSync(file)).toThrow();
    const h = fakeIo(base, () => json({}));
    expect(await run(['whoami'], h.io)).toBe(3);
    expect(h.seen).toEqual([]);
  });

  it('login --user: password from stdin to /login, a token made with the session cookie, the session ended; logout revokes that token', async () => {
    const base = { HOME: home };
    const f = fakeIo(
      base,
      (req) => {
        if (req.url.endsWith('/login')) return new Response('{"login":"success"}', { headers: { 'set-cookie': 'session=abc; Path=/; HttpOnly' } });
        if (req.url.endsWith('/auth/tokens')) return json({ id: 42, name: 'x', token: 'made-token' }, 201);
        if (req.url.endsWith('/logout')) return json({});
        return json({ id: 'u1', login: 'me', admin: false, approved: true, groups: [] });
      },
      'pa ss\n',
    );
    expect(await run(['--url', 'http://gw.test', 'login', '--user', 'me', '--password-stdin'], f.io)).toBe(0);
    expect(f.seen.map((s) => `${s.method} ${new URL(s.url).pathname}`)).toEqual(['POST /login', 'POST /auth/tokens', 'POST /logout', 'GET /auth/whoami']);
    expect(JSON.parse(f.seen[0].body!)).toEqual({ login: 'me', password: 'pa ss' });
    expect(f.seen[1].headers.cookie).toBe('session=abc');
    expect(f.seen[3].headers.authorization).toBe('Bearer made-token');
    const stored = JSON.parse((await import('node:fs')).readFileSync(path.join(home, '.config/dockyard/config.json'), 'utf8'));
    expect(stored).toEqual({ url: 'http://gw.test', token: 'made-token', login: 'me', tokenId: '42' });
    // The password is never stored.
    expect(JSON.stringify(stored)).not.toContain('pa ss');
    const g = fakeIo(base, () => json({}));
    expect(await run(['logout'], g.io)).toBe(0);
    expect(g.seen.map((s) => `${s.method} ${s.url} ${s.headers.authorization}`)).toEqual(['DELETE http://gw.test/auth/tokens/42 Bearer made-token']);
  });
});
