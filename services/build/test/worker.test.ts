import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { FastifyInstance } from 'fastify';
import { connectNats, json, putBuildContext, request, Subjects } from '@dockyard/kit';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import type { BuildCancelReply, BuildCancelRequest, BuildRequestReply, BuildRequestRequest } from '@dockyard/contracts';
import { buildEnded, collect, docker, dropStreams, removeImages, startBuild, waitFor } from './helpers.js';

type Entry = { name: string; text?: string; type?: 'symlink' | 'file'; linkname?: string };

/** A context tar made in memory (small). */
function contextTar(entries: Entry[]): Readable {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === 'symlink') pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname });
    else pack.entry({ name: e.name }, e.text ?? '');
  }
  pack.finalize();
  return pack as unknown as Readable;
}

describe('The build worker: build.request contexts, recovery from a stopped worker, time limit', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  // Every image of the run carries its label (intermediate layers too), so cleanup finds them all.
  const from = () => `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${env.id}.\n`;

  const ask = async (name: string, entries: Entry[], extra: Partial<BuildRequestRequest> = {}) => {
    await putBuildContext(app.nats, app.subjects, name, contextTar(entries));
    return request<BuildRequestRequest, BuildRequestReply>(app.nats, app.subjects.of('build.request'), {
      contextObject: name,
      dockerfile: 'Dockerfile',
      buildArgs: {},
      tags: [],
      owner: 'process-user',
      ...extra,
    });
  };
  const logText = async (id: string) => (await app.builds.logLines(id)).map((l) => l.line).join('\n');

  beforeAll(async () => {
    env = testEnv();
    app = await startBuild(env, { DOCKYARD_BUILD_CONCURRENCY: '1', DOCKYARD_BUILD_ACK_WAIT_MS: '3000' });
  });
  afterAll(async () => {
    await app.close();
    await removeImages(env);
    await dropStreams(env);
    await env.cleanup();
  });

  it('builds a context from the object store (build.request), pushes the tags asked for, announces the result', async () => {
    const events = collect(app, 'events.build.build.finished');
    const tag = `127.0.0.1:5000/process/${env.id}/env:1`;
    const { buildId } = await ask('ctx-ok', [
      { name: 'Dockerfile', text: `${from()}ARG WHO\nCOPY data/hello.txt /hello.txt\nRUN cat /hello.txt && echo "who=$WHO"\n` },
      { name: 'data/hello.txt', text: 'hello from the object store\n' },
      { name: 'data/link', type: 'symlink', linkname: 'hello.txt' },
    ], { tags: [tag], push: true, buildArgs: { WHO: 'process' } });
    const build = await buildEnded(app, buildId);
    expect(build).toMatchObject({ state: 'SUCCESS', kind: 'process', image: tag, digest: expect.stringMatching(/^sha256:/) });
    const text = await logText(buildId);
    expect(text).toContain('hello from the object store');
    expect(text).toContain('who=process');
    await waitFor(async () => (events.some((e) => e.data.buildId === buildId) ? true : undefined), 10_000, 'finished event');
    expect(events.find((e) => e.data.buildId === buildId)?.data).toMatchObject({ kind: 'process', result: 'SUCCESS', image: tag, digest: build.digest, resource: `build:${buildId}` });
    const manifest = await fetch(`http://127.0.0.1:5000/v2/process/${env.id}/env/manifests/1`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    expect(manifest.headers.get('docker-content-digest')).toBe(build.digest);
    await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  });

  it('refuses contexts whose entries or symlinks escape, and bad requests', async () => {
    const cases: [Entry[], string][] = [
      [[{ name: 'Dockerfile', text: from() }, { name: '../evil', text: 'x' }], 'Context entry "../evil" escapes the build context'],
      [[{ name: 'Dockerfile', text: from() }, { name: 'abs', type: 'symlink', linkname: '/etc/passwd' }], 'Symlink abs points outside the build context (/etc/passwd)'],
      [[{ name: 'Dockerfile', text: from() }, { name: 'a/up', type: 'symlink', linkname: '../../etc' }], 'Symlink a/up points outside the build context (../../etc)'],
    ];
    for (const [i, [entries, message]] of cases.entries()) {
      const { buildId } = await ask(`ctx-bad-${i}`, entries);
      expect(await buildEnded(app, buildId)).toMatchObject({ state: 'FAILURE', errorSource: 'build', error: message });
    }
    await expect(ask('ctx-x', [], { dockerfile: '../Dockerfile' })).rejects.toThrow('dockerfile "../Dockerfile" escapes the build context');
    await expect(ask('ctx-x', [], { tags: ['Not a tag!'] })).rejects.toThrow('tags must be image references');
    const { buildId } = await request<BuildRequestRequest, BuildRequestReply>(app.nats, app.subjects.of('build.request'), {
      contextObject: 'never-put',
      dockerfile: 'Dockerfile',
      buildArgs: {},
      tags: [],
      owner: 'x',
    });
    expect(await buildEnded(app, buildId)).toMatchObject({ state: 'FAILURE', error: 'The build context never-put is not in the object store' });
  });

  it('cancels builds for the service that asked (build.cancel): a queued one at once, a running one stopped', async () => {
    const cancel = (buildId: string) => request<BuildCancelRequest, BuildCancelReply>(app.nats, app.subjects.of('build.cancel'), { buildId });
    const running = await ask('ctx-cancel-running', [{ name: 'Dockerfile', text: `${from()}RUN echo started && sleep 30\n` }]);
    await waitFor(async () => ((await logText(running.buildId)).includes('started') ? true : undefined), 60_000, 'build running');
    // One build at a time here: the second waits in the queue.
    const queued = await ask('ctx-cancel-queued', [{ name: 'Dockerfile', text: `${from()}RUN echo never\n` }]);
    expect(await cancel(queued.buildId)).toEqual({ state: 'ABORTED' });
    await cancel(running.buildId);
    expect(await buildEnded(app, running.buildId, 30_000)).toMatchObject({ state: 'ABORTED' });
    expect(await logText(queued.buildId)).not.toContain('never');
    expect(await cancel('no-such-build')).toEqual({ state: null });
  });

  it('retries a build whose worker stopped mid-build, then gives up with the reason; enforces the time limit', async () => {
    const slow = [{ name: 'Dockerfile', text: `${from()}RUN echo started && sleep 4 && echo finished\n` }];
    const { buildId } = await ask('ctx-slow', slow);
    await waitFor(async () => ((await logText(buildId)).includes('started') ? true : undefined), 60_000, 'build running');
    // The worker goes away mid-build; a new one on the same database and NATS prefix takes over.
    await app.close();
    app = await startBuild(env, { DOCKYARD_BUILD_CONCURRENCY: '1', DOCKYARD_BUILD_ACK_WAIT_MS: '3000' });
    const retried = await buildEnded(app, buildId);
    expect(retried).toMatchObject({ state: 'SUCCESS', attempts: 2 });
    expect(await logText(buildId)).toMatch(/stopped mid-build; retrying \(attempt 2 of 2\)/);

    // With one attempt allowed, the next interrupted build ends FAILURE with the reason.
    const second = await ask('ctx-slow-2', [{ name: 'Dockerfile', text: `${from()}RUN echo started-2 && sleep 4\n` }]);
    await waitFor(async () => ((await logText(second.buildId)).includes('started-2') ? true : undefined), 60_000, 'second build running');
    await app.close();
    app = await startBuild(env, { DOCKYARD_BUILD_CONCURRENCY: '1', DOCKYARD_BUILD_ACK_WAIT_MS: '3000', DOCKYARD_BUILD_MAX_ATTEMPTS: '1', DOCKYARD_BUILD_TIMEOUT_S: '3' });
    expect(await buildEnded(app, second.buildId)).toMatchObject({
      state: 'FAILURE',
      errorSource: 'service',
      error: 'The worker building this stopped mid-build (1 of 1 attempts made)',
    });

    // This worker's time limit is 3 s.
    const long = await ask('ctx-long', [{ name: 'Dockerfile', text: `${from()}RUN sleep 30\n` }]);
    expect(await buildEnded(app, long.buildId)).toMatchObject({ state: 'FAILURE', errorSource: 'build', error: 'The build exceeded the time limit of 3 s' });

    // A build whose worker vanished without trace (no heartbeat for long) is ended by the sweep.
    await app.builds.prisma.build.create({
      data: { id: '00000000-0000-4000-8000-000000000001', kind: 'process', state: 'BUILDING', spec: {}, worker: 'gone', heartbeatAt: new Date(Date.now() - 3_600_000) },
    });
    await app.builder!.sweep();
    expect(await app.builds.prisma.build.findUnique({ where: { id: '00000000-0000-4000-8000-000000000001' } })).toMatchObject({
      state: 'FAILURE',
      error: expect.stringContaining('The worker building this (gone) stopped mid-build'),
    });
    // The step container of the timed-out build is stopped (the engine may take a moment to report it).
    await waitFor(async () => {
      const running = await docker.listContainers({ filters: JSON.stringify({ label: [`dockyard.prefix=${env.id}.`] }) });
      return running.length ? undefined : true;
    }, 15_000, 'no build container left running');
  });

  it('a worker killed with SIGKILL mid-build: the work message is redelivered and another worker retries the build', async () => {
    await app.close();
    const nc = await connectNats(env.env.DOCKYARD_NATS_URL, 'test');
    const subjects = new Subjects(env.env.DOCKYARD_NATS_PREFIX);
    // A separate worker process, killed without any chance to clean up.
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/build/src/server.ts'], {
      env: { ...process.env, ...env.serviceEnv('build'), DOCKYARD_DB_SCHEMA: `${env.id}_build`, DOCKYARD_BUILD_ACK_WAIT_MS: '3000' },
      stdio: 'ignore',
    });
    try {
      await putBuildContext(nc, subjects, 'ctx-killed', contextTar([{ name: 'Dockerfile', text: `${from()}RUN echo killed-start && sleep 4 && echo killed-end\n` }]));
      const started = nc.subscribe(subjects.of('events.build.build.started'), { max: 1 });
      // The process takes a few seconds to start: ask until it answers.
      const { buildId } = await waitFor(
        () =>
          request<BuildRequestRequest, BuildRequestReply>(nc, subjects.of('build.request'), {
            contextObject: 'ctx-killed',
            dockerfile: 'Dockerfile',
            buildArgs: {},
            tags: [],
            owner: 'process-user',
          }).catch((err: Error) => {
            if (/no responders/.test(err.message)) return undefined;
            throw err;
          }),
        60_000,
        'the worker process answering',
      );
      const logs = nc.subscribe(subjects.of(`logs.build.${buildId}`));
      for await (const m of started) expect(json.decode<{ buildId: string }>(m.data).buildId).toBe(buildId);
      for await (const m of logs) if (json.decode<{ line?: string }>(m.data).line === 'killed-start') break;
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      await nc.drain();
    }
    app = await startBuild(env, { DOCKYARD_BUILD_ACK_WAIT_MS: '3000' });
    const build = await app.builds.prisma.build.findFirstOrThrow({ where: { spec: { path: ['context', 'name'], equals: 'ctx-killed' } } });
    const retried = await buildEnded(app, build.id, 60_000);
    expect(retried).toMatchObject({ state: 'SUCCESS', attempts: 2 });
    const text = await logText(build.id);
    expect(text).toMatch(/stopped mid-build; retrying \(attempt 2 of 2\)/);
    expect(text).toContain('killed-end');
  }, 90_000);

  it('a build that ends while NATS refuses its event still announces it, once, when NATS is back (outbox)', async () => {
    const id = randomUUID();
    await app.builds.prisma.build.create({ data: { id, kind: 'process', state: 'BUILDING', owner: 'process-user', spec: {}, platforms: [] } });
    // The EVENTS stream gone (as when its NATS node dies): a plain publish would fail and be lost.
    const jsm = await jetstreamManager(app.nats);
    const stream = app.subjects.stream('EVENTS');
    await jsm.streams.delete(stream);
    const ended = await app.builds.finish(id, ['BUILDING'], { result: 'FAILURE', errorSource: 'service', error: 'ended while NATS was away' });
    expect(ended?.state).toBe('FAILURE');
    const waiting = async () => (await app.builds.prisma.eventOutbox.findMany()).filter((e) => (e.payload as { buildId?: string }).buildId === id);
    expect(await waiting()).toHaveLength(1);

    await app.events.ensureStream();
    await waitFor(async () => ((await waiting()).length === 0 ? true : undefined), 20_000, 'outbox emptied');
    // Another flush or two have run meanwhile: still one event in the stream.
    await new Promise((r) => setTimeout(r, 3000));
    const stored = [];
    const { state } = await jsm.streams.info(stream);
    for (let seq = state.first_seq; state.messages && seq <= state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (m?.json<{ buildId?: string }>().buildId === id) stored.push({ subject: m.subject, data: m.json() });
    }
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ subject: app.subjects.of('events.build.build.finished'), data: { result: 'FAILURE', error: 'ended while NATS was away', resource: `build:${id}` } });
    // A second finish (a redelivered message, an abort racing the worker) stores and announces nothing.
    expect(await app.builds.finish(id, ['BUILDING', 'QUEUED'], { result: 'ABORTED' })).toBeNull();
  }, 60_000);
});
