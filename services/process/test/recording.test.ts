import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { as, docker, ended, removeImages, startProcess, startServices, user, zipOf } from './helpers.js';
import { unzip } from './zipread.js';

const run = promisify(execFile);

// apt builds against Debian's archive: generous limits.
const LONG = 300_000;

describe('Recording strategy against the real engine: define (apt pins, base digest), build (verification, docker load), tampering', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let build: FastifyInstance;
  let tmp: string;
  const alice = user('alice');
  let defined: Buffer;

  beforeAll(async () => {
    env = testEnv();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'ree-'));
    ({ app, build } = await startServices(env));
  });
  afterAll(async () => {
    await app?.close();
    await build?.close();
    await removeImages(env);
    await rm(tmp, { recursive: true, force: true });
    await env.cleanup();
  }, LONG);

  it('defines a project that apt-get installs python3-six: pinned package, base pinned by image id, ree.json, CycloneDX SBOM', async () => {
    const dockerfile = [
      'FROM dockyard/debian:bookworm',
      `LABEL dockyard.prefix=${env.id}.`,
      'RUN apt-get update \\',
      ' && apt-get install -y --no-install-recommends python3-six \\',
      ' && rm -rf /var/lib/apt/lists/*',
      'COPY app.py /app.py',
      '',
    ].join('\n');
    const uuid = await startProcess(app, env, alice, '/api/recording/create', await zipOf({ Dockerfile: dockerfile, 'app.py': 'import six\nprint(six.__version__)\n' }), { tag: 'six' });
    const status = await ended(app, env, alice, uuid);
    expect(status).toMatchObject({ status: 'processed', reason: null });
    defined = (await app.inject({ url: `/api/process/download/${uuid}`, headers: as(env, alice) })).rawPayload;
    const files = await unzip(defined);
    expect([...files.keys()].sort()).toEqual(['Dockerfile', 'app.py', 'ree.json', 'sbom.cdx.json']);
    const base = await docker.getImage('dockyard/debian:bookworm').inspect();
    const ree = JSON.parse(files.get('ree.json')!.toString());
    const six = ree.packages.find((p: { name: string }) => p.name === 'python3-six');
    expect(six).toMatchObject({ type: 'deb', version: expect.stringMatching(/^1\.16/) });
    expect(ree.pinned[0]).toEqual({ type: 'deb', name: 'python3-six', version: six.version, arch: null });
    // Whatever else the build installed (dependencies) is pinned too, each marked as such.
    for (const p of ree.pinned.slice(1)) expect(p).toMatchObject({ type: 'deb', dependency: true });
    expect(ree.bases).toEqual([{ reference: 'dockyard/debian:bookworm', imageId: base.Id, repoDigest: null, pinned: base.Id }]);
    expect(ree.os).toMatchObject({ id: 'debian', versionId: '12' });
    expect(ree.timestamps.defined).toEqual(expect.any(String));
    const text = files.get('Dockerfile')!.toString();
    expect(text).toContain(`FROM ${base.Id}\n`);
    expect(text).toContain(`apt-get install -y --no-install-recommends python3-six=${six.version} \\\n`);
    expect(text).toContain('COPY app.py /app.py');
    const sbom = JSON.parse(files.get('sbom.cdx.json')!.toString());
    expect(sbom).toMatchObject({ bomFormat: 'CycloneDX', specVersion: '1.6' });
    expect(sbom.components).toContainEqual(expect.objectContaining({ name: 'python3-six', version: six.version, purl: `pkg:deb/debian/python3-six@${six.version}?arch=all&distro=debian-12` }));
    expect(sbom.components).toContainEqual(expect.objectContaining({ type: 'operating-system', name: 'debian', version: '12' }));
  }, LONG);

  it('builds the defined REE: verification passes, the image tar loads back with docker load', async () => {
    const uuid = await startProcess(app, env, alice, '/api/recording/build', defined, { tag: 'six-build' });
    const status = await ended(app, env, alice, uuid);
    expect(status).toMatchObject({ status: 'processed' });
    const out = await app.inject({ url: `/api/process/download/${uuid}`, headers: as(env, alice) });
    const files = await unzip(out.rawPayload);
    expect([...files.keys()].sort()).toEqual(['build.log', 'image.tar', 'ree.json', 'sbom.cdx.json', 'verification.json']);
    const verification = JSON.parse(files.get('verification.json')!.toString());
    expect(verification).toMatchObject({ verified: true, mode: 'exact', difference: { missing: [], unexpected: [], changed: [] } });
    expect(verification.found).toBe(verification.recorded);
    expect(files.get('build.log')!.toString()).toContain('python3-six');
    const sbom = JSON.parse(files.get('sbom.cdx.json')!.toString());
    expect(sbom.components.some((c: { name: string }) => c.name === 'python3-six')).toBe(true);

    // The tar is the image: drop the engine's copy, load it back, run it.
    const { tag, id } = verification.image;
    await docker.getImage(tag).remove({ force: true });
    await writeFile(path.join(tmp, 'image.tar'), files.get('image.tar')!);
    const loaded = await run('docker', ['load', '-i', path.join(tmp, 'image.tar')]);
    expect(loaded.stdout).toContain(`Loaded image: ${tag}`);
    expect((await docker.getImage(tag).inspect()).Id).toBe(id);
    const py = await run('docker', ['run', '--rm', '--network', 'none', tag, 'python3', '/app.py']);
    expect(py.stdout.trim()).toMatch(/^1\.16/);
  }, LONG);

  it('fails the build of a tampered REE, listing the difference', async () => {
    const files = await unzip(defined);
    const ree = JSON.parse(files.get('ree.json')!.toString());
    const six = ree.packages.find((p: { name: string }) => p.name === 'python3-six');
    const real = six.version;
    six.version = '1.0.0-tampered';
    ree.packages.push({ type: 'deb', name: 'not-installed-anywhere', version: '1.0', arch: 'amd64' });
    files.set('ree.json', Buffer.from(JSON.stringify(ree)));
    const uuid = await startProcess(app, env, alice, '/api/replay/create', await zipOf(Object.fromEntries(files)));
    const status = await ended(app, env, alice, uuid);
    expect(status.status).toBe('failed');
    expect(status.reason).toBe(
      `Verification failed: the rebuilt image's packages differ from the recorded ones: changed: deb:python3-six recorded 1.0.0-tampered, found ${real} | missing: deb:not-installed-anywhere=1.0`,
    );
    expect((await app.inject({ url: `/api/process/log/${uuid}`, headers: as(env, alice) })).body).toContain('Verification (exact): changed: deb:python3-six');

    // A FROM edited after the definition no longer builds on the pinned base: refused before building.
    const edited = await unzip(defined);
    const base = await docker.getImage('dockyard/debian:bookworm').inspect();
    edited.set('Dockerfile', Buffer.from(edited.get('Dockerfile')!.toString().replace(`FROM ${base.Id}`, 'FROM dockyard/busybox:latest')));
    const moved = await startProcess(app, env, alice, '/api/recording/build', await zipOf(Object.fromEntries(edited)));
    expect(await ended(app, env, alice, moved)).toMatchObject({
      status: 'failed',
      reason: `Dockerfile: FROM dockyard/busybox:latest is not one of the base images pinned in ree.json (${base.Id})`,
    });
  }, LONG);
});
