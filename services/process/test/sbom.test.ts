import type { FastifyInstance } from 'fastify';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { as, docker, ended, removeImages, startProcess, startServices, user, zipOf } from './helpers.js';
import { unzip } from './zipread.js';
import { runScript, parseDpkg } from '../src/domain/packages.js';
import { osMatches, parseSbom } from '../src/domain/sbom.js';

// apt-get update in a container of the base against Debian's archive: generous limits.
const LONG = 240_000;

const cdx = (components: object[]) => JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.5', version: 1, components });
const deb = (name: string, version: string) => ({ type: 'library', name, version, purl: `pkg:deb/debian/${name}@${encodeURIComponent(version)}?arch=amd64&distro=debian-12` });

describe('SBOM strategy: base chosen by OS, every package pinned, unprovidable packages listed', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let build: FastifyInstance;
  const alice = user('alice');
  let baseFiles: string;

  beforeAll(async () => {
    env = testEnv();
    ({ app, build } = await startServices(env, { DOCKYARD_PROCESS_BASE_IMAGES: 'tiny=dockyard/busybox:latest,debian_12=dockyard/debian:bookworm' }));
    const { stdout } = await runScript(docker, 'dockyard/debian:bookworm', "dpkg-query -W -f '${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n'");
    baseFiles = parseDpkg(stdout).find((p) => p.name === 'base-files')!.version;
  }, LONG);
  afterAll(async () => {
    await app?.close();
    await build?.close();
    await removeImages(env);
    await env.cleanup();
  });

  it('defines an REE from a CycloneDX SBOM of Debian packages on the matching base, then builds it (listed packages verified)', async () => {
    const sbom = cdx([{ type: 'operating-system', name: 'debian', version: '12' }, deb('base-files', baseFiles), deb('python3-six', '1.16.0-4')]);
    const uuid = await startProcess(app, env, alice, '/api/sbom/define', await zipOf({ 'bom.cdx.json': sbom, 'app.py': 'print(1)\n' }), { tag: 'from-sbom' });
    const status = await ended(app, env, alice, uuid);
    expect(status).toMatchObject({ status: 'processed' });
    const files = await unzip((await app.inject({ url: `/api/process/download/${uuid}`, headers: as(env, alice) })).rawPayload);
    expect([...files.keys()].sort()).toEqual(['Dockerfile', 'app.py', 'bom.cdx.json', 'ree.json', 'sbom.cdx.json']);
    const base = await docker.getImage('dockyard/debian:bookworm').inspect();
    const dockerfile = files.get('Dockerfile')!.toString();
    expect(dockerfile).toContain(`FROM ${base.Id}\n`);
    expect(dockerfile).toContain('    python3-six=1.16.0-4 \\\n');
    // Already in the base at that version: nothing to install.
    expect(dockerfile).not.toContain('base-files=');
    const ree = JSON.parse(files.get('ree.json')!.toString());
    expect(ree).toMatchObject({ strategy: 'sbom', verification: 'listed', bases: [{ name: 'debian_12', reference: 'dockyard/debian:bookworm', pinned: base.Id }] });
    expect(ree.packages).toEqual([
      { type: 'deb', name: 'base-files', version: baseFiles, arch: 'amd64' },
      { type: 'deb', name: 'python3-six', version: '1.16.0-4', arch: 'amd64' },
    ]);

    // Label the build's layers with this run's prefix, so cleanup finds them.
    files.set('Dockerfile', Buffer.from(dockerfile.replace(/^(FROM .*)$/m, `$1\nLABEL dockyard.prefix=${env.id}.`)));
    const built = await startProcess(app, env, alice, '/api/recording/build', await zipOf(Object.fromEntries(files)));
    expect(await ended(app, env, alice, built)).toMatchObject({ status: 'processed' });
    const out = await unzip((await app.inject({ url: `/api/process/download/${built}`, headers: as(env, alice) })).rawPayload);
    expect(JSON.parse(out.get('verification.json')!.toString())).toMatchObject({ verified: true, mode: 'listed', strategy: 'sbom' });
  }, LONG);

  it('fails listing the packages no base can provide; an OS no base has fails naming the bases', async () => {
    const spdx = JSON.stringify({
      spdxVersion: 'SPDX-2.3',
      SPDXID: 'SPDXRef-DOCUMENT',
      packages: [
        { SPDXID: 'SPDXRef-1', name: 'python3-six', versionInfo: '1.16.0-4', externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: 'pkg:deb/debian/python3-six@1.16.0-4?distro=debian-12' }] },
        { SPDXID: 'SPDXRef-2', name: 'python3-six', versionInfo: '0.1-9', externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: 'pkg:deb/debian/no-such-package-here@0.1-9?distro=debian-12' }] },
        { SPDXID: 'SPDXRef-3', name: 'requests', versionInfo: '2.31.0', externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: 'pkg:pypi/requests@2.31.0' }] },
      ],
    });
    const uuid = await startProcess(app, env, alice, '/api/sbom/define', await zipOf({ 'sbom.spdx.json': spdx }));
    expect(await ended(app, env, alice, uuid)).toMatchObject({ status: 'failed', reason: 'Packages no base image can provide: pkg:pypi/requests@2.31.0, no-such-package-here=0.1-9' });

    const alpine = cdx([{ type: 'operating-system', name: 'alpine', version: '3.20' }, { type: 'library', name: 'musl', version: '1.2.5-r0', purl: 'pkg:apk/alpine/musl@1.2.5-r0' }]);
    const other = await startProcess(app, env, alice, '/api/sbom/define', await zipOf({ 'bom.json': alpine }));
    expect(await ended(app, env, alice, other)).toMatchObject({ status: 'failed', reason: "No base image matches the SBOM's operating system (alpine 3.20); available: tiny (unknown), debian_12 (debian 12)" });
  }, LONG);

  it('reads CycloneDX and SPDX documents and matches operating systems', () => {
    expect(parseSbom({ bomFormat: 'CycloneDX', components: [{ type: 'library', name: 'x', version: '1', purl: 'pkg:deb/debian/x@1?distro=bookworm', components: [deb('y', '2')] }] })).toMatchObject({
      format: 'CycloneDX',
      os: { id: 'debian', version: 'bookworm' },
      packages: [{ type: 'deb', name: 'x', version: '1' }, { type: 'deb', name: 'y', version: '2' }],
    });
    expect(parseSbom({ hello: 1 })).toBeNull();
    const bookworm = { id: 'debian', versionId: '12', codename: 'bookworm', prettyName: null };
    expect(osMatches({ id: 'debian', version: 'bookworm' }, bookworm)).toBe(true);
    expect(osMatches({ id: 'debian', version: '12.5' }, bookworm)).toBe(true);
    expect(osMatches({ id: 'debian', version: '11' }, bookworm)).toBe(false);
    expect(osMatches({ id: 'ubuntu', version: null }, bookworm)).toBe(false);
  });
});
