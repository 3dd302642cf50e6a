import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import pino from 'pino';
import { EventPublisher, Subjects, connectNats, consumeWorkQueue, json, request, serveRequests, type NatsConnection } from '../src/index.js';
import { infra, untilStreamHolds } from '../src/testing.js';

const log = pino({ level: 'silent' });

describe('NATS and JetStream helpers (real nats-server)', () => {
  let nc: NatsConnection;
  let subjects: Subjects;
  beforeAll(async () => {
    nc = await connectNats(infra().natsUrl, 'kit-test');
    subjects = new Subjects(`t${randomBytes(4).toString('hex')}.`);
  });
  afterAll(async () => {
    const jsm = await jetstreamManager(nc);
    for await (const s of jsm.streams.list()) if (s.config.name.startsWith(subjects.stream(''))) await jsm.streams.delete(s.config.name);
    await nc.drain();
  });

  it('answers request/reply and carries handler errors back', async () => {
    serveRequests<{ n: number }, number>(nc, subjects.of('math.double'), async ({ n }) => {
      if (n < 0) throw new Error('negative');
      return n * 2;
    }, log);
    await nc.flush();
    expect(await request(nc, subjects.of('math.double'), { n: 21 })).toBe(42);
    await expect(request(nc, subjects.of('math.double'), { n: -1 })).rejects.toThrow('negative');
  });

  it('turns a request nobody answers into a 503 naming the subject, not a 500', async () => {
    const err = (await request(nc, subjects.of('nobody.listens'), {}, 500).catch((e: unknown) => e)) as { statusCode?: number; message: string };
    expect(err.statusCode).toBe(503);
    expect(err.message).toMatch(/^nobody\.listens did not answer/);
  });

  it('redelivers a work item whose handler failed and acks only after it succeeded', async () => {
    const stream = subjects.stream('WORK');
    const subject = subjects.of('work.items');
    const attempts = new Map<string, number>();
    const stored: string[] = [];
    let redelivered = false;
    let allStored!: () => void;
    const done = new Promise<void>((resolve) => (allStored = resolve));
    // Awaited: the stream and consumer exist before anything is published (a fixed 200 ms wait
    // was too short on a loaded machine: "no responders").
    const stop = await consumeWorkQueue<{ id: string }>({
      nc,
      stream,
      subject,
      durable: 'workers',
      log,
      ackWaitMs: 2000,
      handle: async ({ id }, msg) => {
        const n = (attempts.get(id) ?? 0) + 1;
        attempts.set(id, n);
        if (id === 'b' && n === 1) throw new Error('worker crashed mid-job');
        if (msg.redelivered) redelivered = true;
        stored.push(id);
        if (stored.length === 3) allStored();
      },
    });
    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    for (const id of ['a', 'b', 'c']) await js.publish(subject, json.encode({ id }));
    await done;
    await stop();
    expect(stored.sort()).toEqual(['a', 'b', 'c']);
    expect(attempts.get('b')).toBe(2);
    expect(redelivered).toBe(true);
    // Work-queue retention: acknowledged items are gone from the stream (an ack is not awaited, so
    // the last may land a moment after stop()).
    await untilStreamHolds(nc, stream, 0, 10_000);
  });

  it('publishes events once per message id (JetStream de-duplication)', async () => {
    const events = new EventPublisher(nc, subjects);
    await events.ensureStream();
    await events.publish('events.test.thing.created', { id: 1 }, 'thing-1-created');
    await events.publish('events.test.thing.created', { id: 1 }, 'thing-1-created');
    await events.publish('events.test.thing.created', { id: 2 }, 'thing-2-created');
    const info = await (await jetstreamManager(nc)).streams.info(subjects.stream('EVENTS'));
    expect(info.state.messages).toBe(2);
    expect(info.config.subjects).toEqual([subjects.of('events.>')]);
  });
});
