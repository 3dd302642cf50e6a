import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { extract } from 'tar';
import { makeRepo, pythonSdist, Upstream, tmpDir } from './fixtures.js';
import { alice, startHarness, type Harness } from './helpers.js';

const IMAGE = 'dockyard/debian:bookworm';
const dockerReady = spawnSync('docker', ['image', 'inspect', IMAGE], { stdio: 'ignore' }).status === 0;

(dockerReady ? describe : describe.skip)('a build from the bundle alone, in a Debian container with --network none', () => {
  let upstream: Upstream;
  let h: Harness;
  const label = `dockyard.test=source-cache-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    upstream = await new Upstream().start();
    h = await startHarness(upstream);
  });
  afterAll(async () => {
    const left = execFileSync('docker', ['ps', '-aq', '--filter', `label=${label}`], { encoding: 'utf8' }).trim();
    if (left) execFileSync('docker', ['rm', '-f', ...left.split('\n')]);
    await h?.close();
    await upstream?.stop();
  });

  it('installs the pip dependencies from deps/pip with the request environment and runs the app', async () => {
    const sdist = await pythonSdist('mylib', '1.0.0', { 'mylib/__init__.py': 'VALUE = 42\n', 'setup.py': 'raise SystemExit("never run")\n' });
    const hash = upstream.pypi('mylib', '1.0.0', sdist);
    const repo = makeRepo({ 'requirements.txt': `mylib==1.0.0 --hash=sha256:${hash}\n`, 'main.py': 'import mylib\nprint("built", mylib.VALUE)\n' });
    const id = (await h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: { repo: repo.url, ref: repo.ref, pkg_managers: ['pip'] } })).json().id;
    expect((await h.settle(id)).state).toBe('complete');

    const dir = tmpDir('debian-build-');
    chmodSync(dir, 0o755);
    const dl = await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) });
    writeFileSync(path.join(dir, 'bundle.tgz'), dl.rawPayload);
    mkdirSync(path.join(dir, 'bundle'));
    await extract({ file: path.join(dir, 'bundle.tgz'), cwd: path.join(dir, 'bundle') });
    const env = (await h.app.inject({ url: `/api/v1/requests/${id}/environment-variables`, headers: h.headers(alice) })).json() as Record<string, { value: string; kind: string }>;
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v.kind === 'path' ? `/bundle/${v.value}` : v.value}`]);
    // What `pip install --no-index --find-links $PIP_FIND_LINKS` does for a pure-Python sdist (the image has no pip): unpack, never run setup.py.
    const script = 'set -e; mkdir /tmp/site; for f in "$PIP_FIND_LINKS"/*.tar.gz; do tar -xzf "$f" -C /tmp/site --strip-components=1; done; cd /bundle/app; PYTHONPATH=/tmp/site python3 main.py';
    const out = execFileSync('docker', ['run', '--rm', '--network', 'none', '--label', label, '-v', `${path.join(dir, 'bundle')}:/bundle:ro`, ...envArgs, IMAGE, 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000 });
    expect(out.trim()).toBe('built 42');
  });
});
