import type { FastifyInstance } from 'fastify';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { as, buildEnded, docker, dropStreams, removeImages, startBuild, user } from './helpers.js';

// apt-get talks to Debian's archive over the network: slow on a shared machine, hence the timeout.
const TIMEOUT = 300_000;

describe('A Debian image build that installs a package with apt-get', () => {
  let env: TestEnv;
  let app: FastifyInstance;

  beforeAll(async () => {
    // `make up` makes this image (deploy/local/images.sh debian); say so rather than fail obscurely.
    await docker
      .getImage('dockyard/debian:bookworm')
      .inspect()
      .catch(() => {
        throw new Error('The image dockyard/debian:bookworm is missing: run `deploy/local/images.sh debian` first');
      });
    env = testEnv();
    app = await startBuild(env);
  });
  afterAll(async () => {
    if (!env) return;
    await app?.close();
    await removeImages(env);
    await dropStreams(env);
    await env.cleanup();
  });

  it('builds FROM dockyard/debian:bookworm with RUN apt-get install -y and pushes it', async () => {
    const dockerfile = [
      'FROM dockyard/debian:bookworm',
      `LABEL dockyard.prefix=${env.id}.`,
      'RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends hello && rm -rf /var/lib/apt/lists/*',
      'RUN hello',
      '',
    ].join('\n');
    const res = await app.inject({
      method: 'POST',
      url: '/image',
      headers: { ...as(env, user('alice')), 'content-type': 'application/json' },
      payload: { name: 'debian-hello', dockerfile, nocache: true },
    });
    const { build_id: id } = res.json();
    await buildEnded(app, id, 280_000);
    const done = (await app.inject({ url: `/image/build/${id}`, headers: as(env, user('alice')) })).json();
    expect(done.state).toBe('SUCCESS');
    expect(done.output).toEqual(expect.arrayContaining(['Hello, world!']));
  }, TIMEOUT);
});
