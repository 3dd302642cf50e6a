/**
 * Abuse through the gateway of one whole stack (issue 9): oversized bodies, archives with too many
 * entries, zip bombs, a gzip bomb, `../` / absolute / symlink entries in every archive the services
 * read, symlinks escaping git repositories, git URLs aimed at loopback, private and metadata
 * addresses or at file:// and ext::, names with control characters, NUL or absurd length, and the
 * gateway's rate limit. Each case must get a clear 4xx with {"error": ...} naming the problem (or,
 * where the input is only read by a worker, end failed with a reason naming it) and leave nothing
 * behind. All cases run; the mismatches are reported together.
 *
 * The stack runs with low limits (below) so that "too large" needs kilobytes, not gigabytes. The
 * git URL cells and the rate limit run last, after the registry, source-cache, build and gateway
 * processes are restarted with DOCKYARD_GIT_ALLOW unset and DOCKYARD_RATE_LIMIT low.
 */
import { execFile } from 'node:child_process';
import { readdirSync, statSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { gitDaemon, until, type Stack } from '@dockyard/kit/testing';
import { call, fileForm, gitRepo, rawCall, stackForTest, zipOf, type Reply } from './fixtures/helpers.js';

const sh = promisify(execFile);

const LIMITS = {
  DOCKYARD_PROCESS_MAX_UPLOAD_BYTES: String(1024 * 1024),
  DOCKYARD_PROCESS_MAX_ENTRIES: '20',
  DOCKYARD_PROCESS_MAX_ENTRY_BYTES: '100000',
  DOCKYARD_PROCESS_MAX_TOTAL_BYTES: String(1024 * 1024),
  DOCKYARD_EXECUTION_MAX_FILES: '4',
  DOCKYARD_EXECUTION_MAX_FILE_BYTES: String(1024 * 1024),
  DOCKYARD_EXECUTION_MAX_UPLOAD_BYTES: String(2 * 1024 * 1024),
  DOCKYARD_EXECUTION_MAX_EXPANDED_BYTES: String(1024 * 1024),
  DOCKYARD_EXECUTION_MAX_ARCHIVE_ENTRIES: '20',
  DOCKYARD_BUILD_CONTEXT_MAX_BYTES: String(1024 * 1024),
  DOCKYARD_BUILD_CONTEXT_MAX_FILES: '10',
};
const RATE_LIMIT = 40;

/** A zip whose entry names are rewritten byte for byte (same length): `../x`, `/etc/x` cannot be made with zip(1). */
async function zipWithNames(files: Record<string, string>, rename: Record<string, string>): Promise<Buffer> {
  let buf = await zipOf(files);
  for (const [from, to] of Object.entries(rename)) {
    if (from.length !== to.length) throw new Error('same length only');
    buf = Buffer.from(buf.toString('latin1').split(from).join(to), 'latin1');
  }
  return buf;
}

/** Files under a folder, as relative paths (the data dir, minus the embedded databases). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n);
      if (statSync(p).isDirectory()) {
        if (n !== 'db') walk(p);
      } else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

interface Case {
  name: string;
  send: () => Promise<Reply>;
  /** Accepted statuses (4xx). */
  status: number[];
  /** What the error must mention. */
  error: RegExp;
}

describe('abuse: every hostile input gets a clear 4xx and leaves nothing behind', () => {
  let stack: Stack;
  let daemon: Awaited<ReturnType<typeof gitDaemon>> | undefined;
  const owner = { authorization: 'sage testuser_token' };
  const as = (auth: Record<string, string>, method: string, url: string, body?: unknown, headers?: Record<string, string>) => call(stack.base, auth, method, url, body, headers);
  const mismatches: object[] = [];
  const runCases = async (cases: Case[]) => {
    for (const c of cases) {
      let reply: Reply;
      try {
        reply = await c.send();
      } catch (err) {
        mismatches.push({ case: c.name, got: `request failed: ${(err as Error).message}` });
        continue;
      }
      const error = (reply.json as { error?: unknown } | undefined)?.error;
      const problems: string[] = [];
      if (!c.status.includes(reply.status)) problems.push(`status ${reply.status}, expected ${c.status.join('/')}`);
      if (typeof error !== 'string') problems.push('no {"error"} body');
      else if (!c.error.test(error)) problems.push(`error does not match ${String(c.error)}`);
      if (problems.length) mismatches.push({ case: c.name, got: problems.join('; '), body: reply.text.slice(0, 200) });
    }
  };
  /** What a user owns, listed through the API: nothing may appear from refused requests. */
  const inventory = async () => ({
    apps: (await as(owner, 'GET', '/apps')).text,
    namespaces: (await as(owner, 'GET', '/namespaces')).text,
    images: (await as(owner, 'GET', '/image')).text,
    pipelines: (await as(owner, 'GET', '/pipeline')).text,
    requests: (await as(owner, 'GET', '/api/v1/requests')).text,
    processes: (await as(owner, 'GET', '/api/process')).text,
  });

  beforeEach(() => {
    mismatches.length = 0;
  });
  afterAll(async () => {
    daemon?.stop();
    await stack?.stop();
  });

  let pipeline = '';
  let repos = '';
  beforeAll(async () => {
    stack = await stackForTest({ DOCKYARD_GIT_ALLOW: '127.0.0.1', ...LIMITS });
    repos = path.join(stack.dir, 'git-abuse');
    mkdirSync(repos, { recursive: true });
    daemon = await gitDaemon(repos);
    pipeline = String(((await as(owner, 'POST', '/pipeline', new URLSearchParams({ name: 'abuse' }))).json as { id: number }).id);
  }, 200_000);

  it('uploads and bodies: oversized, too many entries, bombs, escaping entries, control characters', async () => {
    const before = await inventory();
    const dataBefore = filesUnder(path.join(stack.dir, 'data'));
    // 64 KiB: over the JSON limits (ECR 32 KiB, permissions 16 KiB) yet small enough to be read whole.
    // Bodies of megabytes race: the service answers 413 and closes while the gateway is still
    // forwarding, and the gateway turns that into a 502 or a reset (a gateway finding, reported;
    // seen on /login, /register, /pipeline, /namespaces, /permissions and /api/v1/requests).
    const over = 'x'.repeat(64 * 1024);
    const json = (o: unknown) => JSON.stringify(o);
    const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}.txt`, 'x']));
    const bombEntry = Buffer.alloc(50 * 1024 * 1024); // 50 MiB of zeros: a ~50 KiB zip
    const ree = (zip: Buffer, fields: Record<string, string> = {}) => () => as(owner, 'POST', '/api/recording/create', fileForm('file', zip, 'project.zip', fields));
    const job = (files: [string, Buffer][], fields: Record<string, string> = {}) => () => {
      const form = new FormData();
      form.set('command', 'true');
      form.set('image_id', 'dockyard/busybox:latest');
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      for (const [name, content] of files) form.append('attachments', new Blob([new Uint8Array(content)]), name);
      return as(owner, 'POST', `/pipeline/${pipeline}/job`, form);
    };
    const image = (fields: Record<string, string>, files: [string, Buffer][] = []) => () => {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      for (const [name, content] of files) form.append('attachments', new Blob([new Uint8Array(content)]), name);
      return as(owner, 'POST', '/image', form);
    };
    const dockerfile = 'FROM dockyard/busybox:latest\n';
    const slip = await zipWithNames({ Dockerfile: dockerfile, 'aa/evil': 'x' }, { 'aa/evil': '../evil' });
    const absolute = await zipWithNames({ Dockerfile: dockerfile, 'xetc/pw': 'x' }, { 'xetc/pw': '/etc/pw' });
    const linked = await zipOf({ Dockerfile: dockerfile, link: { link: '/etc/passwd' } });
    const raw = (method: string, url: string, type: string, body: string, auth: Record<string, string> = owner) => () => rawCall(stack.base, { ...auth, 'content-type': type }, method, url, Buffer.from(body));
    const tooBig = { status: [413, 400], error: /large|limit|size|too|more than/i };

    const cases: Case[] = [
      // Oversized bodies, one per body-taking endpoint.
      { name: 'POST /apps body 64 KiB', send: raw('POST', '/apps/abuse/over/1.0', 'application/json', json({ description: over })), ...tooBig },
      { name: 'POST /submit body 64 KiB', send: raw('POST', '/submit', 'application/json', json({ namespace: 'abuse', name: 'over', version: '1.0', description: over })), ...tooBig },
      { name: 'PUT /namespaces body 64 KiB', send: raw('PUT', '/namespaces', 'application/json', json({ id: over })), ...tooBig },
      { name: 'PUT /permissions body 64 KiB', send: raw('PUT', '/permissions/abuse/over', 'application/json', json({ operation: 'add', grantee: over })), ...tooBig },
      { name: 'POST /auth/tokens body 64 KiB', send: raw('POST', '/auth/tokens', 'application/json', json({ name: over })), ...tooBig },
      // Not here: a `dockerfile` field larger than DOCKYARD_BUILD_CONTEXT_MAX_BYTES is accepted (see the report).
      { name: 'POST job attachment over the file limit', send: job([['big.bin', Buffer.alloc(1024 * 1024 + 1)]]), ...tooBig },
      { name: 'POST job attachments over the file count', send: job(Array.from({ length: 5 }, (_, i) => [`a${i}`, Buffer.from('x')] as [string, Buffer])), ...tooBig },
      { name: 'POST /api/recording/create upload over the limit', send: ree(Buffer.alloc(1024 * 1024 + 1)), ...tooBig },
      { name: 'POST /api/recording/build upload over the limit', send: () => as(owner, 'POST', '/api/recording/build', fileForm('file', Buffer.alloc(1024 * 1024 + 1), 'ree.zip')), ...tooBig },
      { name: 'POST /api/sbom/define upload over the limit', send: () => as(owner, 'POST', '/api/sbom/define', fileForm('file', Buffer.alloc(1024 * 1024 + 1), 'sbom.zip')), ...tooBig },
      { name: 'POST /image attachments over the context file count', send: image({ name: 'many', dockerfile }, Array.from({ length: 12 }, (_, i) => [`a${i}`, Buffer.from('x')] as [string, Buffer])), ...tooBig },
      { name: 'POST /image attachment over the context size', send: image({ name: 'big', dockerfile }, [['big.bin', Buffer.alloc(1024 * 1024 + 1)]]), ...tooBig },

      // Archives with too many entries, zip bombs.
      { name: 'REE zip with 30 entries', send: ree(await zipOf({ Dockerfile: dockerfile, ...many })), status: [400], error: /entries/ },
      { name: 'REE zip bomb (50 MiB entry)', send: ree(await zipOf({ Dockerfile: dockerfile, zeros: bombEntry })), status: [400, 413], error: /larger|limit|bytes/ },
      { name: 'job attachment zip with 30 entries', send: job([['many.zip', await zipOf(many)]]), status: [400], error: /entries/ },
      { name: 'job attachment zip bomb (50 MiB entry)', send: job([['bomb.zip', await zipOf({ zeros: bombEntry })]]), status: [400, 413], error: /expand|limit|large/ },
      // A gzip bomb: a gzip-encoded body is not inflated by anyone (no endpoint reads tar.gz uploads).
      {
        name: 'gzip-encoded JSON bomb to POST /api/v1/requests',
        send: async () => {
          return as(owner, 'POST', '/api/v1/requests', new Uint8Array(gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20))), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        },
        status: [400, 413, 415],
        error: /./,
      },

      // Escaping entries in every archive read: REE zips, job attachment zips, image attachments.
      { name: 'REE zip with ../ entry', send: ree(slip), status: [400], error: /\.\.\/evil.*escapes|zip-slip/ },
      { name: 'REE zip with absolute entry', send: ree(absolute), status: [400], error: /absolute/ },
      { name: 'REE zip with a symlink', send: ree(linked), status: [400], error: /symbolic link/ },
      { name: 'REE dockerfile field ../Dockerfile', send: ree(await zipOf({ Dockerfile: dockerfile }), { dockerfile: '../Dockerfile' }), status: [400], error: /relative path inside/ },
      { name: 'job attachment zip with ../ entry', send: job([['slip.zip', slip]]), status: [400], error: /\.\.\/evil|escap|unsafe/ },
      { name: 'job attachment zip with absolute entry', send: job([['abs.zip', absolute]]), status: [400], error: /\/etc\/pw|absolute|unsafe/ },
      // (A symlink inside a job's zip attachment is not refused: Dockyard never extracts attachments,
      // it only counts and inflates their entries; the job's own command unpacks them in its container.)
      { name: 'job attachment named ../x', send: job([['../x', Buffer.from('x')]]), status: [400], error: /\.\.\/x|name/ },
      { name: 'job attachment named /etc/x', send: job([['/etc/x', Buffer.from('x')]]), status: [400], error: /\/etc\/x|name/ },
      { name: 'image attachment named ../x', send: image({ name: 'slip', dockerfile }, [['../x', Buffer.from('x')]]), status: [400], error: /\.\.\/x|escape|name/ },
      { name: 'image attachment named /etc/x', send: image({ name: 'slip', dockerfile }, [['/etc/x', Buffer.from('x')]]), status: [400], error: /\/etc\/x|escape|name/ },
      { name: 'image attachment named Dockerfile', send: image({ name: 'slip', dockerfile }, [['Dockerfile', Buffer.from('FROM scratch')]]), status: [400], error: /Dockerfile/ },

      // Names with control characters, NUL, absurd length.
      { name: 'pipeline name with NUL', send: () => as(owner, 'POST', '/pipeline', new URLSearchParams({ name: 'a\0b' })), status: [400], error: /name/ },
      { name: 'pipeline name with a newline', send: () => as(owner, 'POST', '/pipeline', new URLSearchParams({ name: 'a\nb' })), status: [400], error: /name/ },
      { name: 'pipeline name 10000 chars', send: () => as(owner, 'POST', '/pipeline', new URLSearchParams({ name: 'n'.repeat(10000) })), status: [400], error: /name/ },
      { name: 'image name with control characters', send: image({ name: 'a\u0001b', dockerfile }), status: [400], error: /name/ },
      { name: 'image name 10000 chars', send: image({ name: 'n'.repeat(10000), dockerfile }), status: [400], error: /name/ },
      { name: 'namespace id with NUL', send: () => as(owner, 'PUT', '/namespaces', { id: 'a\0b' }), status: [400], error: /id/ },
      { name: 'app namespace with %00 in the path', send: () => as(owner, 'POST', '/apps/ab%00c/x/1.0', json({ description: 'x', source: { url: 'git://127.0.0.1/x', architectures: ['linux/amd64'] } })), status: [400], error: /namespace/ },
      { name: 'app repository 300 chars', send: () => as(owner, 'POST', `/apps/abuse/${'r'.repeat(300)}/1.0`, json({ description: 'x', source: { url: 'git://127.0.0.1/x', architectures: ['linux/amd64'] } })), status: [400, 414], error: /repository|name|Bad Request/ },
      { name: 'app version with a control character', send: () => as(owner, 'POST', '/apps/abuse/x/1.0%01', json({ description: 'x', source: { url: 'git://127.0.0.1/x', architectures: ['linux/amd64'] } })), status: [400], error: /version/ },
      { name: 'token name with NUL', send: () => as(owner, 'POST', '/auth/tokens', { name: 'a\0b' }), status: [400], error: /name/ },
      { name: 'REE tag with NUL', send: ree(await zipOf({ Dockerfile: dockerfile }), { tag: 'a\0b' }), status: [400], error: /tag/ },
      { name: 'Cachito package path with NUL', send: () => as(owner, 'POST', '/api/v1/requests', { repo: 'git://127.0.0.1/x', ref: 'a'.repeat(40), pkg_managers: ['gomod'], packages: { gomod: [{ path: 'a\0b' }] } }), status: [400], error: /path/ },
      { name: 'Cachito package path ../', send: () => as(owner, 'POST', '/api/v1/requests', { repo: 'git://127.0.0.1/x', ref: 'a'.repeat(40), pkg_managers: ['gomod'], packages: { gomod: [{ path: '../x' }] } }), status: [400], error: /path/ },
    ];
    await runCases(cases);

    // Nothing created: the owner's lists are as they were, no job in the pipeline, no stray files.
    const after = await inventory();
    if (JSON.stringify(after) !== JSON.stringify(before)) mismatches.push({ case: 'inventory after refusals', got: 'changed', before, after });
    const dataAfter = filesUnder(path.join(stack.dir, 'data'));
    const stray = dataAfter.filter((f) => !dataBefore.includes(f));
    if (stray.length) mismatches.push({ case: 'data dir after refusals', got: `new files ${stray.slice(0, 10).join(', ')}` });
    expect(mismatches).toEqual([]);
  }, 400_000);

  it('git repositories: a symlink escaping the repository fails the build / request naming it; ecr-meta links are skipped', async () => {
    const r = Date.now().toString(36); // unique names: a reused development stack keeps earlier runs
    await gitRepo(repos, `escape${r}`, {
      Dockerfile: 'FROM dockyard/busybox:latest\nCOPY . /src\n',
      leak: { link: '/etc/passwd' },
      'ecr-meta/leak.md': { link: '/etc/passwd' },
      'ecr-meta/ok.md': 'fine\n',
    });
    const commit = (await sh('git', ['-C', path.join(repos, `escape${r}`), 'rev-parse', 'HEAD'])).stdout.trim();
    const url = daemon!.url(`escape${r}`);
    const img = await as(owner, 'POST', '/image', new URLSearchParams({ name: 'escape', repo_url: url }));
    const submitted = await as(owner, 'POST', `/apps/abusegit${r}/escape/1.0`, { description: 'escape', source: { url, branch: 'main', architectures: ['linux/amd64'] } });
    const request = await as(owner, 'POST', '/api/v1/requests', { repo: url, ref: commit, pkg_managers: [] });
    expect([img.status, submitted.status, request.status]).toEqual([200, 200, 201]);
    // ecr-meta: the regular file is imported, the link is not.
    expect((await as(owner, 'GET', `/meta-files/abusegit${r}/escape/1.0/ok.md`)).status).toBe(200);
    const leak = await as(owner, 'GET', `/meta-files/abusegit${r}/escape/1.0/leak.md`);
    expect(leak.status).toBe(404);
    expect(leak.text).not.toContain('root:');
    expect((await as(owner, 'POST', `/builds/abusegit${r}/escape/1.0?skip_image_push=true`)).status).toBe(200);

    const imageBuild = String((img.json as { build_id: string }).build_id);
    const kabuto = await until(async () => {
      const b = (await as(owner, 'GET', `/image/build/${imageBuild}`)).json as { state: string; error?: string };
      return b.state === 'PENDING' ? undefined : b;
    }, 'Kabuto image from git');
    const ecr = await until(async () => {
      const b = (await as(owner, 'GET', `/builds/abusegit${r}/escape/1.0`)).json as { building: boolean; result: string };
      return b.building ? undefined : b;
    }, 'ECR build');
    const cachito = await until(async () => {
      const r = (await as(owner, 'GET', `/api/v1/requests/${String((request.json as { id: number }).id)}`)).json as { state: string; state_reason: string };
      return r.state === 'in_progress' ? undefined : r;
    }, 'Cachito request');
    const ecrLog = (await as(owner, 'GET', `/builds/abusegit${r}/escape/1.0/logs`)).text;
    expect({ kabuto: kabuto.state, ecr: ecr.result, cachito: cachito.state }).toEqual({ kabuto: 'FAILED', ecr: 'FAILURE', cachito: 'failed' });
    expect(JSON.stringify(kabuto)).toMatch(/[Ss]ymlink (leak|ecr-meta\/leak.md) points outside/);
    expect(JSON.stringify(ecr) + ecrLog).toMatch(/[Ss]ymlink (leak|ecr-meta\/leak.md) points outside/);
    expect(cachito.state_reason).toMatch(/leak/);
  }, 300_000);

  it('git URLs to loopback, private, metadata addresses, file:// and ext:: are refused with DOCKYARD_GIT_ALLOW unset; rate limits', async () => {
    // Restart the processes that clone, and the gateway, with no git allowance and a low rate limit.
    const env = { ...stack.env, DOCKYARD_GIT_ALLOW: '', DOCKYARD_RATE_LIMIT: String(RATE_LIMIT) };
    const root = path.resolve(import.meta.dirname, '..');
    const names = ['gateway', 'registry', 'source-cache', 'build'];
    await sh('bash', ['-c', `source deploy/local/lib.sh && for n in ${names.map((n) => `stack-${n}`).join(' ')}; do stop_pid $n 20; done`], { cwd: root, env });
    await sh(path.join(root, 'deploy/local/stack.sh'), ['up'], { cwd: root, env, timeout: 170_000 });
    const before = await inventory();

    const urls = [
      'git://127.0.0.1/escape',
      'http://localhost/x.git',
      'http://[::1]/x.git',
      'http://10.0.0.5/x.git',
      'http://192.168.1.10/x.git',
      'http://169.254.169.254/latest/meta-data/',
      'http://[::ffff:169.254.169.254]/x.git',
      'file:///etc',
      'ext::sh -c touch% /tmp/dockyard-abuse-pwned',
    ];
    const cases: Case[] = [];
    for (const [i, url] of urls.entries()) {
      const refused = { status: [400], error: /not allowed|DOCKYARD_GIT_ALLOW|transport|scheme|git URL/ };
      cases.push({ name: `ECR submit ${url}`, send: () => as(owner, 'POST', `/apps/abuseurl/u${i}/1.0`, { description: 'x', source: { url, branch: 'main', architectures: ['linux/amd64'] } }), ...refused });
      cases.push({ name: `Cachito request ${url}`, send: () => as(owner, 'POST', '/api/v1/requests', { repo: url, ref: 'a'.repeat(40), pkg_managers: [] }), ...refused });
      cases.push({ name: `Kabuto image repo_url ${url}`, send: () => as(owner, 'POST', '/image', new URLSearchParams({ name: `u${i}`, repo_url: url })), ...refused });
    }
    await runCases(cases);
    const after = await inventory();
    if (JSON.stringify(after) !== JSON.stringify(before)) mismatches.push({ case: 'inventory after refused URLs', got: 'changed', before, after });
    const pwned = await sh('ls', ['/tmp/dockyard-abuse-pwned']).then(() => true, () => false);
    if (pwned) mismatches.push({ case: 'ext:: transport', got: 'the command ran' });

    // Rate limit: one identity past the limit gets 429 {"error"}; another identity is unaffected.
    const other = { authorization: 'sage testuser2_token' };
    const statuses: number[] = [];
    let limited: Reply | undefined;
    for (let i = 0; i < RATE_LIMIT * 3 && !limited; i++) {
      const r = await as(other, 'GET', '/auth/whoami');
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    if (!limited) mismatches.push({ case: 'rate limit', got: `no 429 in ${statuses.length} requests` });
    else if (!/rate|limit|many/i.test(String((limited.json as { error?: string } | undefined)?.error))) mismatches.push({ case: 'rate limit', got: `429 without a clear error: ${limited.text}` });
    const unaffected = await as(owner, 'GET', '/auth/whoami');
    if (unaffected.status !== 200) mismatches.push({ case: 'rate limit is per identity', got: `owner got ${unaffected.status}` });

    // No container of this stack left behind.
    const prefix = String(stack.env.DOCKYARD_NATS_PREFIX ?? '');
    const { stdout } = await sh('docker', ['ps', '-a', '-q', '--filter', `label=dockyard.prefix=${prefix}`]);
    if (stdout.trim()) mismatches.push({ case: 'containers', got: `left behind: ${stdout.trim().split('\n').join(' ')}` });
    expect(mismatches).toEqual([]);
  }, 300_000);
});
