import tar from 'tar-stream';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { as, docker, ended, form, removeImages, startProcess, startServices, user, zipOf } from './helpers.js';
import { unzip } from './zipread.js';
import { ZipWriter } from '../src/domain/zip.js';
import { parseBaseImages } from '../src/config.js';

/** A zip whose entry name is changed after writing (yazl refuses bad names itself). */
async function zipWithName(placeholder: string, name: string): Promise<Buffer> {
  const buf = await zipOf({ Dockerfile: 'FROM dockyard/busybox:latest\n', [placeholder]: 'x' });
  const from = Buffer.from(placeholder);
  let i = buf.indexOf(from);
  while (i >= 0) {
    Buffer.from(name).copy(buf, i);
    i = buf.indexOf(from, i + 1);
  }
  return buf;
}

describe('Processes: start, status, log, output, visibility; upload checks; base images', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let build: FastifyInstance;
  const alice = user('alice');
  const bob = user('bob');
  const admin = user('root', { admin: true });
  const dockerfile = () => `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${env.id}.\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n`;

  beforeAll(async () => {
    env = testEnv();
    ({ app, build } = await startServices(env, {
      DOCKYARD_PROCESS_MAX_ENTRIES: '20',
      DOCKYARD_PROCESS_MAX_ENTRY_BYTES: '100000',
      DOCKYARD_PROCESS_BASE_IMAGES: JSON.stringify({ tiny: 'dockyard/busybox:latest', debian_12: 'dockyard/debian:bookworm', gone: 'dockyard/not-here:1' }),
    }));
  });
  afterAll(async () => {
    await app?.close();
    await build?.close();
    await removeImages(env);
    await env.cleanup();
  });

  it('defines a project: answers at once, then status, log (both paths), output zip with the pinned FROM', async () => {
    const zip = await zipOf({ Dockerfile: dockerfile(), 'hello.txt': 'hello REE\n', 'src/app.py': 'print(1)\n' });
    const f = form(zip, { tag: 'my_definition' });
    const res = await app.inject({ method: 'POST', url: '/api/recording/create', payload: f.payload, headers: { ...f.headers, ...as(env, alice) } });
    expect(res.statusCode).toBe(200);
    const { uuid, tag, status_endpoint } = res.json();
    expect(tag).toBe('my_definition');
    expect(status_endpoint).toBe(`/api/process/status/${uuid}`);
    const early = await app.inject({ url: `/api/process/download/${uuid}`, headers: as(env, alice) });
    const now = (await app.inject({ url: status_endpoint, headers: as(env, alice) })).json();
    if (now.status !== 'processed') expect(early.statusCode).toBe(409);

    const status = await ended(app, env, alice, uuid);
    expect(status).toMatchObject({ uuid, tag: 'my_definition', status: 'processed', download_endpoint: `/api/process/download/${uuid}`, download_log_endpoint: `/api/log/download/${uuid}` });
    for (const path of [`/api/process/log/${uuid}`, `/api/log/download/${uuid}`]) {
      const log = await app.inject({ url: path, headers: as(env, alice) });
      expect(log.statusCode).toBe(200);
      expect(log.headers['content-type']).toMatch(/^text\/plain/);
      expect(log.body).toContain('hello REE');
      expect(log.body).toContain('Base image dockyard/busybox:latest is sha256:');
    }
    const out = await app.inject({ url: `/api/process/download/${uuid}`, headers: as(env, alice) });
    expect(out.statusCode).toBe(200);
    expect(out.headers['content-type']).toBe('application/zip');
    const files = await unzip(out.rawPayload);
    expect([...files.keys()].sort()).toEqual(['Dockerfile', 'hello.txt', 'ree.json', 'sbom.cdx.json', 'src/app.py']);
    const baseId = (await docker.getImage('dockyard/busybox:latest').inspect()).Id;
    expect(files.get('Dockerfile')!.toString()).toContain(`FROM ${baseId}\n`);
    const ree = JSON.parse(files.get('ree.json')!.toString());
    expect(ree).toMatchObject({ strategy: 'recording', verification: 'exact', dockerfile: 'Dockerfile', bases: [{ reference: 'dockyard/busybox:latest', imageId: baseId, repoDigest: null, pinned: baseId }] });
    expect(ree.input.sha256).toMatch(/^[0-9a-f]{64}$/);
    const sbom = JSON.parse(files.get('sbom.cdx.json')!.toString());
    expect(sbom).toMatchObject({ bomFormat: 'CycloneDX', specVersion: '1.6' });

    // Only the owner (and admins) see it; for anyone else it does not exist.
    for (const path of [`/api/process/status/${uuid}`, `/api/process/log/${uuid}`, `/api/log/download/${uuid}`, `/api/process/download/${uuid}`]) {
      const other = await app.inject({ url: path, headers: as(env, bob) });
      expect(other.statusCode).toBe(404);
      expect(other.json()).toEqual({ error: `Process ${uuid} not found` });
      expect((await app.inject({ url: path, headers: as(env, admin) })).statusCode).toBe(200);
    }
    const mine = await app.inject({ url: '/api/process?tag=my_definition', headers: as(env, alice) });
    expect(mine.json().map((p: { uuid: string }) => p.uuid)).toContain(uuid);
    expect((await app.inject({ url: '/api/process?tag=my_definition', headers: as(env, bob) })).json()).toEqual([]);
    expect((await app.inject({ url: '/api/process?tag=other', headers: as(env, alice) })).json()).toEqual([]);
  });

  it('a failed process says why, and has no output', async () => {
    const zip = await zipOf({ Dockerfile: `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${env.id}.\nRUN exit 3\n` });
    const uuid = await startProcess(app, env, alice, '/api/recording/create', zip);
    const status = await ended(app, env, alice, uuid);
    expect(status.status).toBe('failed');
    expect(status.reason).toMatch(/^The image build failed \(build .+\): .*returned a non-zero code: 3/);
    const out = await app.inject({ url: `/api/process/download/${uuid}`, headers: as(env, alice) });
    expect(out.statusCode).toBe(409);
    expect(out.json().error).toMatch(new RegExp(`^Process ${uuid} failed; it has no output`));
    const missingBase = await startProcess(app, env, alice, '/api/recording/create', await zipOf({ Dockerfile: 'FROM dockyard/never-built:1\n' }));
    expect(await ended(app, env, alice, missingBase)).toMatchObject({ status: 'failed', reason: 'Base image dockyard/never-built:1 is not available on the engine' });
  });

  it('unknown processes are 404; the caller must be signed in', async () => {
    const id = '6f1c2c43-3f55-4a36-9d0e-2f1f3c7f0a11';
    for (const path of [`/api/process/status/${id}`, `/api/process/log/${id}`, `/api/process/download/${id}`]) {
      const res = await app.inject({ url: path, headers: as(env, alice) });
      expect(res.statusCode).toBe(404);
      expect(res.json()).toEqual({ error: `Process ${id} not found` });
    }
    expect((await app.inject({ url: `/api/process/status/${id}` })).statusCode).toBe(401);
  });

  it('refuses bad uploads with a 400 that says which problem', async () => {
    const post = async (url: string, file: Buffer | null, fields: Record<string, string> = {}) => {
      const f = form(file, fields);
      const res = await app.inject({ method: 'POST', url, payload: f.payload, headers: { ...f.headers, ...as(env, alice) } });
      return { status: res.statusCode, error: res.json().error as string };
    };
    const symlink = new ZipWriter();
    symlink.addBuffer('Dockerfile', 'FROM dockyard/busybox:latest\n');
    (symlink as unknown as { zip: { addBuffer: (b: Buffer, n: string, o: object) => void } }).zip.addBuffer(Buffer.from('/etc/passwd'), 'link', { mode: 0o120777 });
    symlink.end();
    const chunks: Buffer[] = [];
    for await (const c of symlink.stream) chunks.push(c as Buffer);
    const many: Record<string, string> = { Dockerfile: 'FROM x\n' };
    for (let i = 0; i < 25; i++) many[`f${i}`] = 'x';

    expect(await post('/api/recording/create', Buffer.from('this is not a zip'))).toMatchObject({ status: 400, error: expect.stringMatching(/^file: not a zip archive/) });
    expect(await post('/api/recording/create', await zipOf({ 'README.md': 'hi' }))).toEqual({ status: 400, error: 'file: the archive has no Dockerfile' });
    expect(await post('/api/recording/create', await zipOf({ 'build/Containerfile': 'FROM x' }), { dockerfile: 'build/Containerfile' })).toMatchObject({ status: 200 });
    expect(await post('/api/recording/create', await zipOf({ Dockerfile: 'FROM x' }), { dockerfile: '../Dockerfile' })).toEqual({ status: 400, error: 'dockerfile: "../Dockerfile" must be a relative path inside the archive' });
    expect(await post('/api/recording/create', await zipWithName('aa/evil', '../evil'))).toEqual({ status: 400, error: 'file: entry "../evil" escapes the archive (zip-slip)' });
    expect(await post('/api/recording/create', await zipWithName('xetc/pw', '/etc/pw'))).toEqual({ status: 400, error: 'file: entry "/etc/pw" has an absolute path (entries must stay inside the archive)' });
    expect(await post('/api/recording/create', await zipOf({ Dockerfile: 'FROM x', 'a\u0001b\nc': 'x' }))).toEqual({ status: 400, error: 'file: entry "a\\u0001b\\nc" has a control character in its name' });
    expect(await post('/api/recording/create', Buffer.concat(chunks))).toEqual({ status: 400, error: 'file: entry "link" is a symbolic link (links are not allowed in the archive)' });
    expect(await post('/api/recording/create', await zipOf(many))).toEqual({ status: 400, error: 'file: the archive has 26 entries, more than the limit of 20' });
    expect(await post('/api/recording/create', await zipOf({ Dockerfile: 'FROM x', big: Buffer.alloc(200_000) }))).toEqual({ status: 400, error: 'file: entry "big" is 200000 bytes, larger than the limit of 100000' });
    expect(await post('/api/recording/create', null, { tag: 'x' })).toEqual({ status: 400, error: 'file: required (the zip file)' });
    expect(await post('/api/recording/create', await zipOf({ Dockerfile: 'FROM x' }), { colour: 'red' })).toEqual({ status: 400, error: 'Field colour not supported' });
    expect(await post('/api/recording/build', await zipOf({ Dockerfile: 'FROM x' }))).toEqual({ status: 400, error: 'file: not a defined REE (ree.json missing)' });
    expect(await post('/api/replay/create', await zipOf({ Dockerfile: 'FROM x', 'ree.json': '{' }))).toMatchObject({ status: 400, error: expect.stringMatching(/^file: ree.json is not valid JSON/) });
    expect(await post('/api/sbom/define', await zipOf({ 'notes.json': '{"a":1}' }))).toEqual({ status: 400, error: 'file: no CycloneDX or SPDX JSON SBOM found in the archive' });
  });

  it('lists the configured base images and streams one as a docker save tar', async () => {
    const list = await app.inject({ url: '/api/image/list', headers: as(env, alice) });
    expect(list.json()).toEqual([
      { name: 'tiny', download_endpoint: '/api/image/download/tiny' },
      { name: 'debian_12', download_endpoint: '/api/image/download/debian_12' },
      { name: 'gone', download_endpoint: '/api/image/download/gone' },
    ]);
    const res = await app.inject({ url: '/api/image/download/tiny', headers: as(env, alice) });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-tar');
    const names: string[] = [];
    const extract = tar.extract();
    extract.on('entry', (h, s, next) => {
      names.push(h.name);
      s.resume();
      s.on('end', next);
    });
    await new Promise((resolve, reject) => Readable.from(res.rawPayload).pipe(extract).on('finish', resolve).on('error', reject));
    expect(names).toContain('manifest.json');
    expect((await app.inject({ url: '/api/image/download/python_2_7', headers: as(env, alice) })).json()).toEqual({ error: 'Image python_2_7 not found' });
    expect((await app.inject({ url: '/api/image/download/gone', headers: as(env, alice) })).statusCode).toBe(404);
    expect((await app.inject({ url: '/api/image/download/..%2Fx', headers: as(env, alice) })).statusCode).toBe(400);
  });

  it('parses base image configuration as JSON or name=ref lists', () => {
    expect(parseBaseImages('debian_12=dockyard/debian:bookworm, python_3_11=dockyard/debian:bookworm')).toEqual({ debian_12: 'dockyard/debian:bookworm', python_3_11: 'dockyard/debian:bookworm' });
    expect(parseBaseImages('{"a": "busybox:1"}')).toEqual({ a: 'busybox:1' });
    expect(() => parseBaseImages('bad name=x')).toThrow('base image name "bad name" must match');
    expect(() => parseBaseImages('novalue')).toThrow('"novalue" is not name=image');
  });
});
