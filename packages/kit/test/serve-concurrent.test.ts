import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { Subjects, connectNats, request, serveRequestsConcurrently, type NatsConnection } from '../src/index.js';
import { infra } from '../src/testing.js';

const log = pino({ level: 'silent' });

/** Polls a condition that becomes true asynchronously; fails after 10 s. */
async function waitFor(condition: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 10_000; !condition(); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > deadline) throw new Error('condition not reached within 10 s');
  }
}

describe('serveRequestsConcurrently (real nats-server)', () => {
  let nc: NatsConnection;
  let subjects: Subjects;
  beforeAll(async () => {
    nc = await connectNats(infra().natsUrl, 'kit-test-concurrent');
    subjects = new Subjects(`t${randomBytes(4).toString('hex')}.`);
  });
  afterAll(async () => {
    await nc.drain();
  });

  it('handles requests side by side, at most maxInFlight at once, and carries errors back', async () => {
    let entered = 0;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    serveRequestsConcurrently<{ n: number }, number>(
      nc,
      subjects.of('slow.double'),
      async ({ n }) => {
        entered++;
        await gate;
        if (n < 0) throw new Error('negative');
        return n * 2;
      },
      log,
      { maxInFlight: 3 },
    );
    await nc.flush();
    const answers = [1, 2, 3, 4, -5].map((n) => request<{ n: number }, number>(nc, subjects.of('slow.double'), { n }, 10_000).catch((e: Error) => e.message));
    // Three handlers run at once (serveRequests would have entered one); the other two wait.
    await waitFor(() => entered === 3);
    await nc.flush();
    expect(entered).toBe(3);
    open();
    expect(await Promise.all(answers)).toEqual([2, 4, 6, 8, 'negative']);
    expect(entered).toBe(5);
  });
});
