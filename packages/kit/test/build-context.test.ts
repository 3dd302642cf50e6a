import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { connectNats, contextBucket, deleteBuildContext, getBuildContext, putBuildContext, Subjects, type NatsConnection } from '../src/index.js';
import { infra } from '../src/testing.js';

describe('build contexts in the JetStream object store (real NATS)', () => {
  let nc: NatsConnection;
  const subjects = new Subjects(`t${randomBytes(4).toString('hex')}.`);

  beforeAll(async () => {
    nc = await connectNats(infra().natsUrl, 'kit-test');
  });
  afterAll(async () => {
    await nc.request(`$JS.API.STREAM.DELETE.OBJ_${contextBucket(subjects)}`, '').catch(() => undefined);
    await nc.drain();
  });

  it('streams a context in and out unchanged, and deletes it', async () => {
    const chunks = Array.from({ length: 24 }, () => randomBytes(128 * 1024));
    const sha = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
    const info = await putBuildContext(nc, subjects, 'ctx/one.tar', Readable.from(chunks));
    expect(info.size).toBe(24 * 128 * 1024);
    const got = await getBuildContext(nc, subjects, 'ctx/one.tar');
    const hash = createHash('sha256');
    for await (const c of got!.stream) hash.update(c as Buffer);
    expect([got!.size, hash.digest('hex')]).toEqual([info.size, sha]);
    await deleteBuildContext(nc, subjects, 'ctx/one.tar');
    expect(await getBuildContext(nc, subjects, 'ctx/one.tar')).toBeNull();
    expect(await getBuildContext(nc, subjects, 'never-put')).toBeNull();
  });
});
