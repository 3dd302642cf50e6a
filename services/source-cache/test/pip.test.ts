import { createHash } from 'node:crypto';
import { makeRepo, Upstream } from './fixtures.js';
import { alice, startHarness, type Harness } from './helpers.js';
import { chooseFiles, parseRequirements } from '../src/pm/pip.js';

describe('pip requests (local PyPI simple index upstream)', () => {
  let upstream: Upstream;
  let h: Harness;
  let requestsHash: string;

  beforeAll(async () => {
    upstream = await new Upstream().start();
    requestsHash = upstream.pypi('requests', '2.31.0');
    upstream.pypi('requests', '2.30.0');
    upstream.pypi('setuptools', '69.0.0');
    upstream.pypi('Flask_Login', '0.6.3');
    h = await startHarness(upstream);
  });
  afterAll(async () => {
    await h?.close();
    await upstream?.stop();
  });
  const create = (body: Record<string, unknown>) => h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: body });

  it('fetches pinned requirements (hashes checked), build requirements as dev; env vars; PyPI view; warm request fetches nothing', async () => {
    const repo = makeRepo({
      'setup.py': 'from setuptools import setup\nsetup(name="my-app", version="1.2.0")\n',
      'requirements.txt': `# runtime\nrequests==2.31.0 \\\n    --hash=sha256:${requestsHash}\nflask-login==0.6.3  # a comment\n`,
      'requirements-build.txt': 'setuptools==69.0.0\n',
    });
    const id = (await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['pip'] })).json().id;
    const done = await h.settle(id);
    expect(done.state).toBe('complete');
    expect(done.packages).toEqual([
      {
        name: 'my-app',
        type: 'pip',
        version: '1.2.0',
        dependencies: [
          { name: 'flask-login', type: 'pip', version: '0.6.3', replaces: null },
          { name: 'requests', type: 'pip', version: '2.31.0', replaces: null },
          { name: 'setuptools', type: 'pip', version: '69.0.0', replaces: null },
        ],
      },
    ]);
    const icm = (await h.app.inject({ url: `/api/v1/requests/${id}/content-manifest`, headers: h.headers(alice) })).json();
    expect(icm.image_contents[0].dependencies).toEqual([{ purl: 'pkg:pypi/flask-login@0.6.3' }, { purl: 'pkg:pypi/requests@2.31.0' }]);
    expect(icm.image_contents[0].sources).toHaveLength(3);
    expect((await h.app.inject({ url: `/api/v1/requests/${id}/environment-variables`, headers: h.headers(alice) })).json()).toEqual({
      PIP_FIND_LINKS: { value: 'deps/pip', kind: 'path' },
      PIP_NO_INDEX: { value: 'true', kind: 'literal' },
    });
    const page = await h.app.inject({ url: `/api/v1/requests/${id}/packages/pypi/simple/requests/`, headers: h.headers(alice) });
    expect(page.body).toContain(`href="https://dockyard.test/api/v1/requests/${id}/packages/pypi/files/requests-2.31.0.tar.gz#sha256=${requestsHash}"`);
    expect(page.body).not.toContain('2.30.0');
    const file = await h.app.inject({ url: `/api/v1/requests/${id}/packages/pypi/files/requests-2.31.0.tar.gz`, headers: h.headers(alice) });
    expect(createHash('sha256').update(file.rawPayload).digest('hex')).toBe(requestsHash);

    const before = upstream.count('/pypi/');
    const again = (await create({ repo: repo.url, ref: repo.ref, pkg_managers: ['pip'] })).json().id;
    expect((await h.settle(again)).state).toBe('complete');
    expect(upstream.count('/pypi/')).toBe(before);
  });

  it('fails on an unpinned requirement naming the line, and on a hash mismatch', async () => {
    const unpinned = makeRepo({ 'requirements.txt': 'requests==2.31.0\nflask>=2\n' });
    const a = await h.settle((await create({ repo: unpinned.url, ref: unpinned.ref, pkg_managers: ['pip'] })).json().id);
    expect(a).toMatchObject({ state: 'failed', state_reason: 'requirements.txt line 2: the requirement is not pinned with "==": flask>=2' });
    const wrong = makeRepo({ 'requirements.txt': `requests==2.30.0 --hash=sha256:${'0'.repeat(64)}\n` });
    const b = await h.settle((await create({ repo: wrong.url, ref: wrong.ref, pkg_managers: ['pip'] })).json().id);
    expect(b.state).toBe('failed');
    expect(b.state_reason).toMatch(/requests==2\.30\.0 with a listed hash/);
  });

  it('chooses the files the hashes name, else the sdist', () => {
    const links = [
      { filename: 'a-1.tar.gz', sha256: '1'.repeat(64) },
      { filename: 'a-1-py3-none-any.whl', sha256: '2'.repeat(64) },
    ];
    expect(chooseFiles(links, ['2'.repeat(64)]).map((l) => l.filename)).toEqual(['a-1-py3-none-any.whl']);
    expect(chooseFiles(links, ['3'.repeat(64)])).toEqual([]);
    expect(chooseFiles(links, []).map((l) => l.filename)).toEqual(['a-1.tar.gz']);
    expect(chooseFiles([{ filename: 'a-1.tar.gz' }], ['3'.repeat(64)]).map((l) => l.filename)).toEqual(['a-1.tar.gz']);
    expect(chooseFiles([links[1]], []).map((l) => l.filename)).toEqual(['a-1-py3-none-any.whl']);
  });

  it('parses requirement files strictly', () => {
    expect(parseRequirements('a==1 --hash=sha256:' + 'A'.repeat(64) + '\nb[x]==2; python_version>"3"\n', 'r.txt')).toEqual([
      { name: 'a', version: '1', hashes: ['a'.repeat(64)], line: 1 },
      { name: 'b', version: '2', hashes: [], line: 2 },
    ]);
    expect(() => parseRequirements('-e git+https://x\n', 'r.txt')).toThrow('r.txt line 1: the option "-e" is not supported');
    expect(() => parseRequirements('--index-url http://evil\n', 'r.txt')).toThrow(/--index-url/);
  });
});
