import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { request } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { as, buildEnded, collect, docker, dropStreams, removeImages, startBuild, user, waitFor } from './helpers.js';

/** A multipart body by hand (light-my-request has no form-data helper). */
function multipart(fields: Record<string, string>, files: { name: string; content: string }[] = []) {
  const boundary = `----dockyard${Math.random().toString(16).slice(2)}`;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`);
  for (const f of files) {
    parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="attachments"; filename="${f.name}"\r\nContent-Type: application/octet-stream\r\n\r\n${f.content}\r\n`);
  }
  return { payload: `${parts.join('')}--${boundary}--\r\n`, contentType: `multipart/form-data; boundary=${boundary}` };
}

describe('Kabuto images on the real Docker engine and registry', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  const alice = user('alice');
  const bob = user('bob');
  const admin = user('root', { admin: true });

  const post = (who: typeof alice, body: ReturnType<typeof multipart>) =>
    app.inject({ method: 'POST', url: '/image', headers: { ...as(env, who), 'content-type': body.contentType }, payload: body.payload });
  const status = async (who: typeof alice, id: string) => (await app.inject({ url: `/image/build/${id}`, headers: as(env, who) })).json();
  const finished = async (who: typeof alice, id: string) => {
    await buildEnded(app, id);
    return status(who, id);
  };

  beforeAll(async () => {
    env = testEnv();
    // Small context limits, so the limit test needs no large upload.
    app = await startBuild(env, { DOCKYARD_BUILD_CONTEXT_MAX_BYTES: '4096', DOCKYARD_BUILD_CONTEXT_MAX_FILES: '4' });
  });
  afterAll(async () => {
    await app.close();
    await removeImages(env);
    await dropStreams(env);
    await env.cleanup();
  });

  it('builds a Dockerfile with attachments (multipart), pushes it, and tells its state, events and live log', async () => {
    const events = collect(app, 'events.build.build.>');
    const { payload, contentType } = multipart(
      { name: 'hello', dockerfile: 'FROM dockyard/busybox:latest\nCOPY greeting.txt /greeting.txt\nRUN cat /greeting.txt\n' },
      [{ name: 'greeting.txt', content: 'hello from an attachment\n' }],
    );
    const res = await post(alice, { payload, contentType });
    expect(res.statusCode).toBe(200);
    const { status: text, build_id: id } = res.json();
    expect(text).toBe('Your image is being built');
    const live = collect(app, `logs.build.${id}`);
    const done = await finished(alice, id);
    expect(done).toMatchObject({ state: 'SUCCESS', id: expect.any(Number) });
    expect(done.output).toEqual(expect.arrayContaining(['hello from an attachment']));

    // The image, its owner's only; the reference is pullable by digest from the registry.
    const image = (await app.inject({ url: `/image/${done.id}`, headers: as(env, alice) })).json();
    expect(image[done.id]).toEqual({ id: done.id, name: 'hello', dockerfile: expect.stringContaining('COPY greeting.txt'), creation_date: new Date().toISOString().slice(0, 10) });
    expect((await app.inject({ url: `/image/${done.id}`, headers: as(env, bob) })).statusCode).toBe(404);
    expect((await app.inject({ url: `/image/build/${id}`, headers: as(env, bob) })).statusCode).toBe(404);
    expect(Object.keys((await app.inject({ url: '/image', headers: as(env, bob) })).json())).toEqual([]);
    expect(Object.keys((await app.inject({ url: '/image', headers: as(env, alice) })).json())).toEqual([String(done.id)]);
    expect(Object.keys((await app.inject({ url: '/image', headers: as(env, admin) })).json())).toContain(String(done.id));

    const { image: got } = await request<{ id: string }, { image: { reference: string; owner: string; state: string } | null }>(app.nats, app.subjects.of('build.image.get'), { id: String(done.id) });
    expect(got).toMatchObject({ owner: 'alice', state: 'SUCCESS', reference: expect.stringMatching(/^127\.0\.0\.1:5000\/kabuto\/alice\/hello@sha256:[0-9a-f]{64}$/) });
    const manifest = await fetch(`http://${got!.reference.replace('/kabuto/', '/v2/kabuto/').replace('@', '/manifests/')}`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    expect(manifest.status).toBe(200);
    expect((await request(app.nats, app.subjects.of('build.image.get'), { id: '999999' })) as object).toEqual({ image: null });

    await waitFor(async () => (events.filter((e) => e.data.buildId === id).length === 3 ? true : undefined), 10_000, 'three events');
    const mine = events.filter((e) => e.data.buildId === id);
    expect(mine.map((e) => e.subject)).toEqual(['events.build.build.queued', 'events.build.build.started', 'events.build.build.finished']);
    expect(mine[2].data).toMatchObject({ kind: 'kabuto', result: 'SUCCESS', errorSource: null, imageId: done.id, digest: expect.stringMatching(/^sha256:/), resource: `image-build:${id}` });
    expect(live.some((m) => m.data.line === 'hello from an attachment')).toBe(true);
    expect(live.at(-1)?.data).toEqual({ end: true, result: 'SUCCESS' });
  });

  it('reuses the layer cache, and builds without it when nocache is set (form body)', async () => {
    const dockerfile = 'FROM dockyard/busybox:latest\nRUN echo cached-step > /x\n';
    const form = (nocache: boolean) => `name=cachey&nocache=${nocache}&dockerfile=${encodeURIComponent(dockerfile)}`;
    const headers = { ...as(env, alice), 'content-type': 'application/x-www-form-urlencoded' };
    const first = (await app.inject({ method: 'POST', url: '/image', headers, payload: form(false) })).json();
    expect((await finished(alice, first.build_id)).state).toBe('SUCCESS');
    const cached = await finished(alice, (await app.inject({ method: 'POST', url: '/image', headers, payload: form(false) })).json().build_id);
    expect(cached.output.join('\n')).toMatch(/Using cache/);
    const fresh = await finished(alice, (await app.inject({ method: 'POST', url: '/image', headers, payload: form(true) })).json().build_id);
    expect(fresh.state).toBe('SUCCESS');
    expect(fresh.output.join('\n')).not.toMatch(/Using cache/);
  });

  it('reports a failing Dockerfile as FAILED with its output', async () => {
    const res = await post(alice, multipart({ name: 'broken', dockerfile: 'FROM dockyard/busybox:latest\nRUN echo about-to-fail && exit 3\n' }));
    const done = await finished(alice, res.json().build_id);
    expect(done).toMatchObject({ state: 'FAILED', error: expect.stringContaining('returned a non-zero code: 3') });
    expect(done.output).toEqual(expect.arrayContaining(['about-to-fail']));
  });

  it('refuses bad input with 400 and anonymous callers with 401', async () => {
    const cases: [ReturnType<typeof multipart>, RegExp][] = [
      [multipart({ name: 'x', dockerfile: 'FROM scratch\n' }, [{ name: '../escape.txt', content: 'x' }]), /escapes the build context/],
      [multipart({ name: 'x', dockerfile: 'FROM scratch\n' }, [{ name: 'sub/dir.txt', content: 'x' }]), /escapes the build context/],
      [multipart({ name: 'x', dockerfile: 'FROM scratch\n' }, [{ name: 'Dockerfile', content: 'x' }]), /reserved/],
      [multipart({ name: 'x' }), /Must provide a dockerfile or a repository/],
      [multipart({ dockerfile: 'FROM scratch\n' }), /name is required/],
      [multipart({ name: 'Not A Name', dockerfile: 'FROM scratch\n' }), /docker repository name/],
      [multipart({ name: 'x', repo_url: 'file:///etc' }), /not allowed/],
      [multipart({ name: 'x', repo_url: 'http://169.254.169.254/repo.git' }), /non-public address/],
      [multipart({ name: 'x', dockerfile: 'FROM scratch\n', extra: 'y' }), /Field extra not supported/],
    ];
    for (const [body, message] of cases) {
      const res = await post(alice, body);
      expect({ status: res.statusCode, error: res.json().error }).toEqual({ status: 400, error: expect.stringMatching(message) });
    }
    const anon = await app.inject({ method: 'POST', url: '/image', headers: { ...as(env, { ...alice, id: null, login: null }) }, payload: { name: 'x', dockerfile: 'FROM scratch' } });
    expect(anon.statusCode).toBe(401);
    expect((await app.inject({ url: '/image/build/00000000-0000-0000-0000-000000000000', headers: as(env, alice) })).statusCode).toBe(404);
    expect(await docker.ping()).toBeTruthy();
  });

  it('refuses contexts over the size or file-count limit with 413, leaving nothing staged', async () => {
    const big = await post(alice, multipart({ name: 'big', dockerfile: 'FROM scratch\n' }, [{ name: 'big.bin', content: 'x'.repeat(5000) }]));
    expect(big.statusCode).toBe(413);
    // The dockerfile field is part of the context: 3,000 bytes of attachment pass alone, not with it.
    const dockerfile = `FROM scratch\n# ${'y'.repeat(2000)}\n`;
    const fits = await post(alice, multipart({ name: 'fits', dockerfile: 'FROM scratch\n' }, [{ name: 'part.bin', content: 'x'.repeat(3000) }]));
    expect(fits.statusCode).toBe(200);
    const over = await post(alice, multipart({ name: 'over', dockerfile }, [{ name: 'part.bin', content: 'x'.repeat(3000) }]));
    expect([over.statusCode, over.json().error]).toEqual([413, 'The build context is larger than 4096 bytes']);
    const many = await post(alice, multipart({ name: 'many', dockerfile: 'FROM scratch\n' }, ['a', 'b', 'c', 'd', 'e'].map((n) => ({ name: n, content: n }))));
    expect([many.statusCode, many.json().error]).toEqual([413, expect.stringMatching(/files/)]);
    expect(await readdir(path.join(env.dataDir, 'build', 'uploads'))).toEqual([]);
  });

  it('runs DOCKYARD_BUILD_CONCURRENCY (2) builds at the same time, and aborts them', async () => {
    const ids: string[] = [];
    for (const n of ['one', 'two']) {
      const res = await post(alice, multipart({ name: `slow-${n}`, dockerfile: `FROM dockyard/busybox:latest\nRUN echo started-${n} && sleep 60\n` }));
      ids.push(res.json().build_id);
    }
    // Each sleeps a minute: both logs show their start only if they run side by side.
    await waitFor(async () => {
      const lines = await Promise.all(ids.map((id) => app.builds.logLines(id)));
      return lines.every((l, i) => l.some((x) => x.line === `started-${i ? 'two' : 'one'}`)) ? true : undefined;
    }, 60_000, 'both builds running');
    const rows = await app.builds.prisma.build.findMany({ where: { id: { in: ids } } });
    expect(rows.map((r) => r.state)).toEqual(['BUILDING', 'BUILDING']);
    for (const row of rows) await app.builds.abort(row);
    for (const id of ids) expect(await finished(alice, id)).toMatchObject({ state: 'FAILURE', error: 'Aborted' });
  });
});
