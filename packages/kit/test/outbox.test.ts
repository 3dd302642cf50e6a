import { randomBytes, randomUUID } from 'node:crypto';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { jetstreamManager } from '@nats-io/jetstream';
import pino from 'pino';
import { EVENT_OUTBOX_SQL, EventOutbox, EventPublisher, Subjects, connectNats, type NatsConnection, type SqlExecutor } from '../src/index.js';
import { infra } from '../src/testing.js';

const log = pino({ level: 'silent' });

/** What a Prisma client offers the outbox, over a PGlite database or one of its transactions. */
const sql = (db: PGlite | Transaction): SqlExecutor => ({
  $executeRawUnsafe: async (q, ...values) => (await db.query(q, values)).affectedRows ?? 0,
  $queryRawUnsafe: async <T>(q: string, ...values: unknown[]) => (await db.query(q, values)).rows as T,
});

describe('EventOutbox (PGlite + real nats-server)', () => {
  let nc: NatsConnection;
  let subjects: Subjects;
  let lite: PGlite;
  let events: EventPublisher;

  const stored = async () => {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(subjects.stream('EVENTS'));
    const out: { subject: string; data: { id: string; n: number } }[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages; seq++) {
      const m = await jsm.streams.getMessage(subjects.stream('EVENTS'), { seq });
      if (m) out.push({ subject: m.subject.slice(subjects.of('').length), data: m.json() });
    }
    return out;
  };
  const waiting = async () => (await lite.query<{ n: number }>('SELECT count(*)::int AS n FROM event_outbox')).rows[0].n;

  beforeAll(async () => {
    nc = await connectNats(infra().natsUrl, 'kit-outbox-test');
    // One embedded database for the file (starting PGlite is the slow part), emptied per test.
    lite = await PGlite.create();
    await lite.exec(EVENT_OUTBOX_SQL);
    await lite.exec('CREATE TABLE things (id int PRIMARY KEY, state text)');
  });
  beforeEach(async () => {
    subjects = new Subjects(`t${randomBytes(4).toString('hex')}.`);
    events = new EventPublisher(nc, subjects);
    await lite.exec('TRUNCATE event_outbox, things');
  });
  afterEach(async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(subjects.stream('EVENTS')).catch(() => undefined);
  });
  afterAll(async () => {
    await lite?.close();
    await nc?.drain();
  });

  /** Stores a thing's new state and its event in one transaction, as a service does. */
  const change = (outbox: EventOutbox, n: number, fail = false) =>
    lite.transaction(async (tx) => {
      await tx.query('INSERT INTO things VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET state = $2', [n, 'done']);
      await outbox.add(sql(tx), 'events.test.thing.done', { id: randomUUID(), n });
      if (fail) throw new Error('rolled back');
    });

  it('publishes stored events in order, once, and empties the outbox', async () => {
    await events.ensureStream();
    const outbox = new EventOutbox(sql(lite), events, log);
    for (const n of [1, 2, 3]) await change(outbox, n);
    await expect(change(outbox, 4, true)).rejects.toThrow('rolled back');
    expect(await outbox.flush()).toBe(3);
    expect((await stored()).map((e) => [e.subject, e.data.n])).toEqual([
      ['events.test.thing.done', 1],
      ['events.test.thing.done', 2],
      ['events.test.thing.done', 3],
    ]);
    // The rolled-back change announced nothing; nothing is left waiting.
    expect(await waiting()).toBe(0);
  });

  it('keeps events while NATS cannot store them and publishes them once it can', async () => {
    // No EVENTS stream yet: every publish fails (as with the stream's leader gone).
    const outbox = new EventOutbox(sql(lite), events, log);
    for (const n of [1, 2]) await change(outbox, n);
    expect(await outbox.flush()).toBe(0);
    expect(await waiting()).toBe(2);

    await events.ensureStream();
    // Two replicas of the service flushing at once: JetStream drops the repeated message ids.
    const other = new EventOutbox(sql(lite), events, log);
    const [a, b] = await Promise.all([outbox.flush(), other.flush()]);
    expect(a + b).toBeGreaterThanOrEqual(2);
    expect((await stored()).map((e) => e.data.n)).toEqual([1, 2]);
    expect(await waiting()).toBe(0);
  });

  it('flushes on its own every interval until stopped', async () => {
    await events.ensureStream();
    const outbox = new EventOutbox(sql(lite), events, log, { intervalMs: 100 });
    outbox.start();
    await change(outbox, 7);
    for (let i = 0; i < 50 && (await waiting()); i++) await new Promise((r) => setTimeout(r, 100));
    await outbox.stop();
    expect((await stored()).map((e) => e.data.n)).toEqual([7]);
  });
});
