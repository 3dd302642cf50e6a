/**
 * DOCKYARD_ROLE and platform routing: an `api` process queues builds but consumes none; `worker`
 * processes serve no routes; each worker only receives builds for the platforms it announces
 * (DOCKYARD_BUILD_PLATFORMS), and a build for a platform no worker announces stays QUEUED.
 */
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { FastifyInstance } from 'fastify';
import { jetstreamManager } from '@nats-io/jetstream';
import { putBuildContext, request } from '@dockyard/kit';
import { testEnv, until, untilStreamHolds, type TestEnv } from '@dockyard/kit/testing';
import type { BuildRequestReply, BuildRequestRequest } from '@dockyard/contracts';
import { as, buildEnded, dropStreams, removeImages, startBuild, user, waitFor } from './helpers.js';

describe('build roles and platform routing: api queues, each worker gets only its platforms', () => {
  let env: TestEnv;
  let api: FastifyInstance;
  let amd64: FastifyInstance;
  let s390x: FastifyInstance;

  const ask = async (name: string, platform: string | undefined) => {
    const pack = tar.pack();
    pack.entry({ name: 'Dockerfile' }, `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${env.id}.\nRUN echo built\n`);
    pack.finalize();
    await putBuildContext(api.nats, api.subjects, name, pack as unknown as Readable);
    const req = { contextObject: name, dockerfile: 'Dockerfile', buildArgs: {}, tags: [], owner: 'scale-user', ...(platform ? { platform } : {}) } as BuildRequestRequest;
    return (await request<BuildRequestRequest, BuildRequestReply>(api.nats, api.subjects.of('build.request'), req)).buildId;
  };

  beforeAll(async () => {
    env = testEnv();
    api = await startBuild(env, { DOCKYARD_ROLE: 'api' });
    amd64 = await startBuild(env, { DOCKYARD_ROLE: 'worker', DOCKYARD_BUILD_PLATFORMS: 'linux/amd64', DOCKYARD_BUILD_CONCURRENCY: '1' });
    s390x = await startBuild(env, { DOCKYARD_ROLE: 'worker', DOCKYARD_BUILD_PLATFORMS: 'linux/s390x', DOCKYARD_BUILD_CONCURRENCY: '1' });
    // Workers start in the background once ready: wait for their consumers.
    const jsm = await jetstreamManager(api.nats);
    await until(async () => {
      let n = 0;
      for await (const _ of jsm.consumers.list(api.subjects.stream('BUILD_WORK'))) n++;
      return n === 3 ? true : undefined;
    }, 'build workers consuming', 60_000);
  }, 120_000);
  afterAll(async () => {
    for (const app of [s390x, amd64, api]) await app?.close();
    await removeImages(env);
    await dropStreams(env);
    await env.cleanup();
  });

  it('an api process has no worker; a worker process has no routes, only health and metrics', async () => {
    expect(api.builder).toBeNull();
    expect(amd64.builder?.platforms).toEqual(['linux/amd64']);
    const headers = as(env, user('scale-user'));
    expect((await api.inject({ method: 'GET', url: '/image', headers })).statusCode).toBe(200);
    expect((await amd64.inject({ method: 'GET', url: '/image', headers })).statusCode).toBe(404);
    expect((await amd64.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await amd64.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    // One durable consumer per announced platform plus `any`; none made by the api process.
    const jsm = await jetstreamManager(api.nats);
    const names: string[] = [];
    for await (const c of jsm.consumers.list(api.subjects.stream('BUILD_WORK'))) names.push(c.name);
    expect(names.sort()).toEqual(['build-workers-any', 'build-workers-linux_amd64', 'build-workers-linux_s390x']);
  });

  it('routes each build to a worker announcing its platform; one for an unannounced platform stays QUEUED', async () => {
    const onAmd64 = await ask('ctx-amd64', 'linux/amd64');
    const onS390x = await ask('ctx-s390x', 'linux/s390x');
    const anyPlatform = await ask('ctx-any', undefined);
    const nobody = await ask('ctx-riscv', 'linux/riscv64');

    const a = await buildEnded(api, onAmd64, 150_000);
    expect(a.state).toBe('SUCCESS');
    expect(a.worker).toBe(amd64.builder!.id);
    // The s390x worker got its build (the engine here cannot run s390x images: how it ends is not the point).
    const s = await buildEnded(api, onS390x, 150_000);
    expect(s.worker).toBe(s390x.builder!.id);
    const any = await buildEnded(api, anyPlatform, 150_000);
    expect([amd64.builder!.id, s390x.builder!.id]).toContain(any.worker);

    // Nobody builds riscv64: it waits in the queue, untouched, until a worker for it starts (or it is aborted).
    const waiting = await waitFor(async () => (await api.builds.prisma.build.findUnique({ where: { id: nobody } })) ?? undefined);
    expect(waiting.state).toBe('QUEUED');
    expect(waiting.worker).toBeNull();
    // A worker acknowledges its message only after the build's end is stored (and announced), so
    // the three ended builds' messages leave the stream a moment after their state is final.
    await untilStreamHolds(api.nats, api.subjects.stream('BUILD_WORK'), 1);
    await api.builds.abort(waiting);
    expect((await buildEnded(api, nobody)).state).toBe('ABORTED');
  });
});
