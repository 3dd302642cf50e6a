import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { request, serveRequests } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { rawDocument, type RegistryApp, type RegistryAppGetReply, type RegistryAppGetRequest } from '@dockyard/contracts';
import { buildPermissionsApp } from '../../permissions/src/app.js';
import { loadPermissionsConfig } from '../../permissions/src/config.js';
import { as, buildEnded, collect, docker, dropStreams, removeImages, startBuild, user, waitFor } from './helpers.js';
import { gitDaemon, makeAppRepo, type AppRepo } from './git-fixture.js';

describe('ECR builds from a git repository (git daemon, real engine, registry, permissions service)', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let permissions: FastifyInstance;
  let daemon: Awaited<ReturnType<typeof gitDaemon>>;
  let repo: AppRepo;
  const apps = new Map<string, RegistryApp>();
  const alice = user('alice');
  const pushed: string[] = [];
  let events: ReturnType<typeof collect>;

  /** A fixture app version, as the registry would store it. */
  const fixture = (version: string, source: Partial<RegistryApp['source']>, commit = '') => {
    apps.set(`sage/simple:${version}`, {
      id: `app-${version}`,
      owner: 'alice',
      namespace: 'sage',
      name: 'simple',
      version,
      frozen: false,
      description: 'A fixture app',
      source: { url: daemon.url('simple'), dockerfile: 'Dockerfile', directory: '.', build_args: {}, architectures: ['linux/amd64'], ...source },
      commit,
      sourceArchive: null,
    });
  };
  const start = async (version: string, who = alice, query = '') => app.inject({ method: 'POST', url: `/builds/sage/simple/${version}${query}`, headers: as(env, who) });
  const status = async (version: string) => (await app.inject({ url: `/builds/sage/simple/${version}`, headers: as(env, alice) })).json();
  const logs = async (version: string, follow = false) => (await app.inject({ url: `/builds/sage/simple/${version}/logs${follow ? '?follow=true' : ''}`, headers: as(env, alice) })).body;
  const ended = async (version: string) => {
    const b = await app.builds.prisma.build.findFirstOrThrow({ where: { version }, orderBy: { number: 'desc' } });
    await buildEnded(app, b.id);
    return status(version);
  };

  beforeAll(async () => {
    env = testEnv();
    daemon = await gitDaemon(path.join(env.dataDir, 'git'));
    repo = await makeAppRepo(path.join(env.dataDir, 'git', 'simple'), `${env.id}.`, daemon.url('lib'));
    ({ app: permissions } = await buildPermissionsApp(loadPermissionsConfig(env.serviceEnv('permissions'))));
    await permissions.ready();
    await request(permissions.nats, permissions.subjects.of('permissions.own'), { resource: { type: 'repository', name: 'sage/simple' }, owner: 'alice' });
    app = await startBuild(env, { DOCKYARD_GIT_ALLOW: '127.0.0.1' });
    events = collect(app, 'events.build.build.>');
    // The registry service answers registry.app.get in production; this test stands up a small
    // responder on the same NATS connection that serves the fixture apps above.
    serveRequests<RegistryAppGetRequest, RegistryAppGetReply>(
      app.nats,
      app.subjects.of('registry.app.get'),
      async ({ namespace, name, version }) => ({ app: apps.get(`${namespace}/${name}:${version}`) ?? null }),
      app.log,
    );
    fixture('1.0', { build_args: { GREETING: 'hello-build-arg' } }, await repo.rev('main'));
    fixture('feature', { branch: 'feature', directory: 'app', dockerfile: 'Dockerfile_sage' });
    fixture('tagged', { tag: 'v1.0', directory: 'app', dockerfile: 'Dockerfile_sage' });
    fixture('fails', { directory: 'fail' });
    fixture('slow', { directory: 'slow' });
    fixture('escape', { branch: 'escape', directory: 'escape' });
    fixture('multi', { directory: 'app', dockerfile: 'Dockerfile_sage', architectures: ['linux/amd64', 'linux/arm64'] });
    fixture('traversal', { directory: '../outside' });
    fixture('dockerfile-traversal', { directory: 'app', dockerfile: '../../Dockerfile' });
  });
  afterAll(async () => {
    await app?.close();
    await permissions?.close();
    daemon?.stop();
    for (const ref of pushed) await docker.getImage(ref).remove({ force: true }).catch(() => undefined);
    await removeImages(env);
    await dropStreams(env);
    await env.cleanup();
  });

  it('refuses unapproved accounts (403), callers without FULL_CONTROL (401), unknown apps (404), escaping paths (400)', async () => {
    const res = await start('1.0', user('newbie', { approved: false }));
    expect([res.statusCode, res.json()]).toEqual([403, { error: 'Your account is not approved to perform this action.' }]);
    const bob = await start('1.0', user('bob'));
    expect([bob.statusCode, bob.json()]).toEqual([401, { error: 'Not authorized. (User bob does not have permission FULL_CONTROL for repository sage/simple)' }]);
    const anon = await start('1.0', { ...alice, id: null, login: null, approved: false });
    expect(anon.statusCode).toBe(401);
    expect((await start('9.9')).json()).toEqual({ error: 'App sage/simple:9.9 not found' });
    expect((await start('traversal')).json()).toEqual({ error: 'source.directory "../outside" escapes the build context' });
    expect((await start('dockerfile-traversal')).json()).toEqual({ error: 'source.dockerfile "../../Dockerfile" escapes the build context' });
    expect((await app.inject({ url: '/builds/sage/simple/1.0', headers: as(env, user('bob')) })).statusCode).toBe(401);
    expect((await app.inject({ url: '/builds/sage/simple/never', headers: as(env, alice) })).json()).toEqual({ error: 'No build found for sage/simple:never' });
  });

  it('builds the recorded commit with build args, pushes, and the image pulls back by digest; several builds run at once', async () => {
    const queued = await Promise.all(['1.0', 'feature', 'tagged', 'fails'].map((v) => start(v, alice, v === 'feature' ? '?skip_image_push=true' : '')));
    expect(queued.map((r) => r.json())).toEqual([{ build_number: 1 }, { build_number: 1 }, { build_number: 1 }, { build_number: 1 }]);

    const main = await ended('1.0');
    expect(main).toMatchObject({
      number: 1,
      building: false,
      result: 'SUCCESS',
      url: '/builds/sage/simple/1.0/logs',
      image: '127.0.0.1:5000/sage/simple:1.0',
      digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      platforms: [{ platform: 'linux/amd64', building: false, result: 'SUCCESS', digest: main.digest, error: null }],
    });
    expect(main.duration).toBeGreaterThan(0);
    expect(main.timestamp).toBeGreaterThan(Date.now() - 600_000);
    expect(await logs('1.0')).toContain('greeting=hello-build-arg');
    expect(await logs('1.0')).toContain('from-submodule');
    expect(await logs('1.0')).toContain('Fetching 1 submodule(s)');
    pushed.push('127.0.0.1:5000/sage/simple:1.0');

    // Pull back by digest after dropping the local tag.
    await docker.getImage('127.0.0.1:5000/sage/simple:1.0').remove({ noprune: true });
    const byDigest = `127.0.0.1:5000/sage/simple@${main.digest}`;
    await new Promise<void>((resolve, reject) =>
      docker.pull(byDigest, {}, (err: Error | null, stream?: NodeJS.ReadableStream) =>
        err || !stream ? reject(err) : docker.modem.followProgress(stream, (e: Error | null) => (e ? reject(e) : resolve())),
      ),
    );
    expect((await docker.getImage(byDigest).inspect()).RepoDigests).toContain(byDigest);
    pushed.push(byDigest);

    const feature = await ended('feature');
    expect(feature).toMatchObject({ result: 'SUCCESS', image: null, digest: null });
    expect(await logs('feature')).toContain('marker=feature-branch');
    pushed.push('127.0.0.1:5000/sage/simple:feature');
    expect(await ended('tagged')).toMatchObject({ result: 'SUCCESS', image: '127.0.0.1:5000/sage/simple:tagged' });
    expect(await logs('tagged')).toContain('marker=tagged');
    pushed.push('127.0.0.1:5000/sage/simple:tagged');

    const fails = await ended('fails');
    expect(fails).toMatchObject({ result: 'FAILURE', image: null, platforms: [{ platform: 'linux/amd64', result: 'FAILURE', error: expect.stringContaining('non-zero code: 3') }] });
    const failLog = await logs('fails');
    expect(failLog).toContain('this step fails');
    expect(failLog).toContain("returned a non-zero code: 3");

    // A second build of a version gets the next number.
    expect((await start('tagged')).json()).toEqual({ build_number: 2 });
    expect(await ended('tagged')).toMatchObject({ number: 2, result: 'SUCCESS' });
  });

  it('builds the platforms a worker offers and fails the others by name', async () => {
    expect((await start('multi')).statusCode).toBe(200);
    const multi = await ended('multi');
    pushed.push('127.0.0.1:5000/sage/simple:multi');
    expect(multi.result).toBe('FAILURE');
    expect(multi.platforms).toEqual([
      { platform: 'linux/amd64', building: false, result: 'SUCCESS', digest: expect.stringMatching(/^sha256:/), error: null },
      { platform: 'linux/arm64', building: false, result: 'FAILURE', digest: null, error: expect.stringContaining('No worker can build for platform linux/arm64') },
    ]);
    const text = await logs('multi');
    expect(text).toContain('[linux/arm64] No worker can build for platform linux/arm64');
    expect(text).toContain('[linux/amd64] marker=main-branch');
  });

  it('refuses a symlink pointing outside the repository', async () => {
    await start('escape');
    const escape = await ended('escape');
    expect(escape.result).toBe('FAILURE');
    expect(await logs('escape')).toContain('Symlink passwd points outside the repository (../../../../etc/passwd)');
  });

  it('aborts a running build (DELETE), streaming its log with ?follow=true until the end', async () => {
    await start('slow');
    const following = logs('slow', true);
    await waitFor(async () => ((await logs('slow')).includes('slow-start') ? true : undefined), 60_000, 'slow build running');
    const aborted = await app.inject({ method: 'DELETE', url: '/builds/sage/simple/slow', headers: as(env, alice) });
    expect(aborted.statusCode).toBe(200);
    expect(aborted.json()).toMatchObject({ result: 'ABORTED', building: false });
    expect(await following).toContain('slow-start');
    const again = await app.inject({ method: 'DELETE', url: '/builds/sage/simple/slow', headers: as(env, alice) });
    expect([again.statusCode, again.json()]).toEqual([409, { error: 'Build 1 of sage/simple:slow has already finished (ABORTED)' }]);
  });

  it('builds a Kabuto image from a git repo_url', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/image',
      headers: { ...as(env, alice), 'content-type': 'application/x-www-form-urlencoded' },
      payload: `name=fromgit&dockerfile=ignored&repo_url=${encodeURIComponent(daemon.url('simple'))}`,
    });
    const { build_id: id } = res.json();
    await buildEnded(app, id);
    const done = (await app.inject({ url: `/image/build/${id}`, headers: as(env, alice) })).json();
    expect(done).toMatchObject({ state: 'SUCCESS' });
    expect(done.output).toEqual(expect.arrayContaining(['greeting=none']));
    const image = (await app.inject({ url: `/image/${done.id}`, headers: as(env, alice) })).json();
    expect(image[done.id]).toMatchObject({ name: 'fromgit', dockerfile: null });
  });

  it('published every event in the shape openapi/events.yaml gives', async () => {
    await app.nats.flush();
    const doc = rawDocument('events') as { components: { schemas: Record<string, { 'x-subject'?: string }> } };
    const ajv = new Ajv2020({ strict: false });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema(schema, name);
    const schemaFor = (subject: string) => Object.entries(doc.components.schemas).find(([, s]) => s['x-subject'] === subject)?.[0];
    expect(new Set(events.map((e) => e.subject))).toEqual(new Set(['events.build.build.queued', 'events.build.build.started', 'events.build.build.finished']));
    for (const { subject, data } of events) {
      const validate = ajv.getSchema(schemaFor(subject)!)!;
      expect({ subject, valid: validate(data), errors: validate.errors ?? null }).toEqual({ subject, valid: true, errors: null });
    }
    const results = events.filter((e) => e.subject.endsWith('finished')).map((e) => e.data.result);
    expect(new Set(results)).toEqual(new Set(['SUCCESS', 'FAILURE', 'ABORTED']));
  });
});
