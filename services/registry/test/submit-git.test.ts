import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request, parseGitPolicy } from '@dockyard/kit';
import type { RegistryAppGetReply } from '@dockyard/contracts';
import { SourceFetcher } from '../src/domain/source.js';
import { appDoc, startHarness, user, type Harness } from './harness.js';
import { freePort, waitForPort } from '@dockyard/kit/testing';

/** Local git repositories served by `git daemon` on a free port of 127.0.0.1 (allowed by DOCKYARD_GIT_ALLOW here). */
const ICON = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 74, 70, 73, 70, 0, 1, 2, 3, 4, 5]);

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.org', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.org' },
  }).trim();
}



describe('submit from git (git daemon on 127.0.0.1; branch, tag, submodule, derived version, ecr-meta)', () => {
  let h: Harness;
  let daemon: ChildProcess;
  let root: string;
  let base: string;
  let url: string;
  const commits: Record<string, string> = {};
  const owner = user('testuser');

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'dockyard-registry-git-'));
    base = path.join(root, 'served');
    mkdirSync(base);
    const port = await freePort();
    url = `git://127.0.0.1:${port}`;

    // sub: the submodule.
    const sub = path.join(root, 'sub');
    mkdirSync(sub);
    git(sub, 'init', '-q', '-b', 'main');
    writeFileSync(path.join(sub, 'lib.txt'), 'from the submodule\n');
    git(sub, 'add', '.');
    git(sub, 'commit', '-qm', 'sub');
    commits.sub = git(sub, 'rev-parse', 'HEAD');
    git(root, 'clone', '-q', '--bare', sub, path.join(base, 'sub.git'));

    // plugin: an app with a Dockerfile in plugin-simple/, ecr-meta files, a submodule (relative URL), tags and a branch.
    const work = path.join(root, 'plugin');
    mkdirSync(path.join(work, 'plugin-simple/ecr-meta'), { recursive: true });
    git(work, 'init', '-q', '-b', 'main');
    writeFileSync(path.join(work, 'plugin-simple/Dockerfile'), 'FROM dockyard/busybox:latest\n');
    writeFileSync(path.join(work, 'plugin-simple/ecr-meta/ecr-icon.jpg'), ICON);
    writeFileSync(path.join(work, 'plugin-simple/ecr-meta/ecr-science-description.md'), '# Science\n');
    writeFileSync(path.join(work, 'plugin-simple/ecr-meta/.hidden'), 'skipped\n');
    writeFileSync(path.join(work, '.gitmodules'), '[submodule "vendor/sub"]\n\tpath = vendor/sub\n\turl = ../sub.git\n');
    git(work, 'add', '.');
    git(work, 'update-index', '--add', '--cacheinfo', `160000,${commits.sub},vendor/sub`);
    git(work, 'commit', '-qm', 'first');
    git(work, 'tag', 'v1.0');
    commits.v1 = git(work, 'rev-parse', 'HEAD');
    writeFileSync(path.join(work, 'plugin-simple/app.py'), 'print("hi")\n');
    git(work, 'add', 'plugin-simple'); // not `add .`: that would stage the unchecked-out submodule's removal
    git(work, 'commit', '-qm', 'second');
    commits.main = git(work, 'rev-parse', 'HEAD');
    commits.describe = git(work, 'describe', '--tags');
    git(work, 'checkout', '-q', '-b', 'dev');
    writeFileSync(path.join(work, 'plugin-simple/dev.txt'), 'dev\n');
    git(work, 'add', 'plugin-simple');
    git(work, 'commit', '-qm', 'dev');
    commits.dev = git(work, 'rev-parse', 'HEAD');
    git(work, 'checkout', '-q', 'main');
    git(root, 'clone', '-q', '--bare', work, path.join(base, 'plugin.git'));

    // evil: a submodule pointing at a private address the policy refuses.
    const evil = path.join(root, 'evil');
    mkdirSync(evil);
    git(evil, 'init', '-q', '-b', 'main');
    writeFileSync(path.join(evil, '.gitmodules'), '[submodule "x"]\n\tpath = x\n\turl = git://10.1.2.3/x.git\n');
    git(evil, 'add', '.');
    git(evil, 'update-index', '--add', '--cacheinfo', `160000,${commits.sub},x`);
    git(evil, 'commit', '-qm', 'evil');
    git(root, 'clone', '-q', '--bare', evil, path.join(base, 'evil.git'));

    daemon = spawn('git', ['daemon', '--reuseaddr', `--base-path=${base}`, '--export-all', '--listen=127.0.0.1', `--port=${port}`, base], { stdio: 'ignore' });
    await waitForPort(port);
    h = await startHarness({ DOCKYARD_GIT_ALLOW: '127.0.0.1', DOCKYARD_GIT_TIMEOUT_S: '60' });
  });
  afterAll(async () => {
    await h?.close();
    daemon?.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  });

  const source = (extra: Record<string, unknown> = {}) => ({ url: `${url}/plugin.git`, directory: 'plugin-simple', architectures: ['linux/amd64'], ...extra });

  async function archiveEntries(key: string): Promise<string[]> {
    const chunks: Buffer[] = [];
    for await (const chunk of await h.registry.blobs.get(key)) chunks.push(chunk as Buffer);
    const out = spawnSync('tar', ['-tz'], { input: Buffer.concat(chunks) });
    return out.stdout.toString().split('\n').filter(Boolean).map((e) => e.replace(/^\.?\//, '').replace(/\/$/, ''));
  }

  it('clones a branch with its submodules, records the commit, stores the archive and imports ecr-meta files', async () => {
    const res = await h.call(owner, 'POST', '/apps/sage/plugin/1.0', appDoc({ source: source({ branch: 'main' }) }));
    expect(res.statusCode).toBe(200);
    const app = res.json();
    expect(app.source).toMatchObject({ branch: 'main', git_commit: commits.main, directory: 'plugin-simple', dockerfile: 'Dockerfile' });

    const { app: stored } = await request<object, RegistryAppGetReply>(h.registry.nats, h.registry.subjects.of('registry.app.get'), { namespace: 'sage', name: 'plugin', version: '1.0' });
    expect(stored).toMatchObject({ commit: commits.main, sourceArchive: expect.stringMatching(/source\.tar\.gz$/) });
    const entries = await archiveEntries(stored!.sourceArchive!);
    expect(entries).toEqual(expect.arrayContaining(['plugin-simple/Dockerfile', 'plugin-simple/app.py', 'vendor/sub/lib.txt', 'plugin-simple/ecr-meta/ecr-icon.jpg']));
    expect(entries.some((e) => e === '.git' || e.startsWith('.git/') || e.includes('/.git'))).toBe(false);

    const icon = await h.call(owner, 'GET', '/meta-files/sage/plugin/1.0/ecr-icon.jpg');
    expect(icon.statusCode).toBe(200);
    expect(icon.headers['content-type']).toBe('image/jpeg');
    expect(icon.rawPayload.equals(ICON)).toBe(true);
    const md = await h.call(owner, 'GET', '/meta-files/sage/plugin/1.0/ecr-science-description.md');
    expect([md.statusCode, md.headers['content-type'], md.body]).toEqual([200, 'text/markdown; charset=utf-8', '# Science\n']);
    expect((await h.call(owner, 'GET', '/meta-files/sage/plugin/1.0/.hidden')).statusCode).toBe(404); // dot files are not imported
    expect((await h.call(user('testuser2'), 'GET', '/meta-files/sage/plugin/1.0/ecr-icon.jpg')).statusCode).toBe(401);
  });

  it('checks out a tag (the tag wins over a branch) and another branch', async () => {
    const tagged = await h.call(owner, 'POST', '/apps/sage/plugin/tagged', appDoc({ source: source({ tag: 'v1.0', branch: 'dev' }) }));
    expect(tagged.statusCode).toBe(200);
    expect(tagged.json().source).toMatchObject({ tag: 'v1.0', branch: 'dev', git_commit: commits.v1 });
    const dev = await h.call(owner, 'POST', '/apps/sage/plugin/dev', appDoc({ source: source({ branch: 'dev' }) }));
    expect(dev.json().source.git_commit).toBe(commits.dev);
  });

  it('derives the version from git describe --tags when none is given', async () => {
    const res = await h.call(owner, 'POST', '/submit', appDoc({ namespace: 'sage', name: 'derived', source: source() }));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ version: commits.describe, source: { git_commit: commits.main } });
    expect(commits.describe).toMatch(/^v1\.0-1-g[0-9a-f]+$/);
    const atTag = await h.call(owner, 'POST', '/submit', appDoc({ namespace: 'sage', name: 'derived', source: source({ tag: 'v1.0' }) }));
    expect(atTag.json().version).toBe('v1.0');
    // The derived version exists now: refused without ?force=true, like any other.
    const again = await h.call(owner, 'POST', '/submit', appDoc({ namespace: 'sage', name: 'derived', source: source({ tag: 'v1.0' }) }));
    expect([again.statusCode, again.json().error]).toEqual([409, 'App sage/derived:v1.0 already exists (use ?force=true to overwrite)']);
    expect((await h.call(owner, 'POST', '/submit?force=true', appDoc({ namespace: 'sage', name: 'derived', source: source({ tag: 'v1.0' }) }))).statusCode).toBe(200);
  });

  it("answers a failed clone with git's reason, and refuses what DOCKYARD_GIT_ALLOW does not allow before anything is created", async () => {
    const missing = await h.call(owner, 'POST', '/apps/sage/plugin/x1', appDoc({ source: source({ url: `${url}/nothing.git` }) }));
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error).toMatch(/^source\.url: git clone failed: fatal: .*(not exported|does not appear|not found|hung up)/);
    const branch = await h.call(owner, 'POST', '/apps/sage/plugin/x2', appDoc({ source: source({ branch: 'no-such-branch' }) }));
    expect(branch.statusCode).toBe(400);
    expect(branch.json().error).toMatch(/no-such-branch/);
    const dir = await h.call(owner, 'POST', '/apps/sage/plugin/x3', appDoc({ source: source({ directory: 'nowhere' }) }));
    expect([dir.statusCode, dir.json().error]).toEqual([400, 'source.directory: nowhere does not exist in the repository']);

    for (const [bad, message] of [
      ['git://10.0.0.5/x.git', /resolves to 10\.0\.0\.5, a non-public address not allowed by DOCKYARD_GIT_ALLOW/],
      ['git://169.254.169.254/x.git', /not allowed by DOCKYARD_GIT_ALLOW/],
      ['file:///etc', /scheme "file" is not allowed \(DOCKYARD_GIT_ALLOW\)/],
      ['ext::sh -c touch% /tmp/pwned', /scheme "ext" is not allowed/],
    ] as const) {
      const res = await h.call(owner, 'POST', '/apps/fresh/app/1', appDoc({ source: { url: bad, architectures: ['linux/amd64'] } }));
      expect([bad, res.statusCode]).toEqual([bad, 400]);
      expect(res.json().error).toMatch(message);
    }
    // Nothing was created for the refused URLs.
    expect(await h.prisma.namespace.findUnique({ where: { id: 'fresh' } })).toBeNull();
    // A submodule URL goes through the same policy.
    const evil = await h.call(owner, 'POST', '/apps/sage/evil/1', appDoc({ source: { url: `${url}/evil.git`, architectures: ['linux/amd64'] } }));
    expect(evil.statusCode).toBe(400);
    expect(evil.json().error).toMatch(/submodule x: .*10\.1\.2\.3.*DOCKYARD_GIT_ALLOW/);
  });

  it('aborts a clone that exceeds the time limit', async () => {
    // A server that accepts and never answers: git waits forever unless the time limit stops it.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const fetcher = new SourceFetcher({ policy: parseGitPolicy('127.0.0.1'), timeoutMs: 1000, maxArchiveBytes: 1 << 20 });
      await expect(fetcher.checkout({ url: `git://127.0.0.1:${port}/x.git`, dockerfile: 'Dockerfile', build_args: {}, architectures: ['linux/amd64'] })).rejects.toMatchObject({
        statusCode: 400,
        message: 'source.url: git clone took longer than 1 s',
      });
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});
