import { createHash } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { json } from '@dockyard/kit';
import { untilStreamHolds } from '@dockyard/kit/testing';
import { makeRepo } from './fixtures.js';
import { alice, startHarness, worker, type Harness } from './helpers.js';
import type { PrismaClient } from '../src/generated/prisma/client.js';

type StateEvent = { id: string; requestId: number; state: string; previousState: string | null };

/**
 * Regression (multi-node test: 6 of 50 requests announced `complete` twice): a work item delivered
 * twice, or two workers racing on one request, must move it to its final state once and publish one
 * event for that move.
 */
describe('a request processed more than once (redelivered or duplicated work items)', () => {
  let h: Harness;
  const events: StateEvent[] = [];
  const eventsOf = (id: number) => events.filter((e) => e.requestId === id);
  const submit = async () => {
    const repo = makeRepo({ 'a.txt': 'a\n' });
    const res = await h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: { repo: repo.url, ref: repo.ref, pkg_managers: [] } });
    expect(res.statusCode).toBe(201);
    return res.json().id as number;
  };
  const get = async (id: number) => (await h.app.inject({ url: `/api/v1/requests/${id}`, headers: h.headers(alice) })).json();
  /** Waits until the request's events stop changing: `want` events seen (an upper bound, not a timing assertion). */
  const eventsFor = async (id: number, want: number) => {
    for (let i = 0; i < 300 && eventsOf(id).length < want; i++) await new Promise((r) => setTimeout(r, 100));
    // A flush round trip through the server: anything published before now has been delivered to us.
    await h.app.nats.flush();
    await new Promise((r) => setTimeout(r, 500));
    return eventsOf(id);
  };

  beforeAll(async () => {
    // role api: no worker consumes the queue unless a test says so; the tests drive the processor.
    h = await startHarness(null, { DOCKYARD_ROLE: 'api' });
    const sub = h.app.nats.subscribe(h.app.subjects.of('events.source-cache.request.state'));
    void (async () => {
      for await (const m of sub) events.push(json.decode(m.data));
    })();
    await h.app.nats.flush();
  });
  afterAll(async () => h?.close());

  it('two workers racing on the same item: one completion, one complete event, the stored bundle intact', async () => {
    const id = await submit();
    const { processor } = h.app.sourceCache;
    await Promise.all([processor.process(id), processor.process(id), processor.process(id)]);
    const body = await get(id);
    expect(body.state).toBe('complete');
    expect(body.state_history.map((s: { state: string }) => s.state)).toEqual(['complete', 'in_progress']);
    const seen = await eventsFor(id, 2);
    expect(seen.map((e) => [e.state, e.previousState])).toEqual([
      ['in_progress', null],
      ['complete', 'in_progress'],
    ]);
    // The losers dropped their own bundles instead of overwriting the one the request points at.
    const dl = await h.app.inject({ url: `/api/v1/requests/${id}/download`, headers: h.headers(alice) });
    expect(dl.statusCode).toBe(200);
    const row = await h.app.sourceCache.requests.load(id);
    expect(createHash('sha256').update(dl.rawPayload).digest('hex')).toBe(row!.bundleSha256);
  }, 90_000);

  it('a redelivered item for an already complete request is acknowledged without work or event', async () => {
    const id = await submit();
    const { processor, requests } = h.app.sourceCache;
    await processor.process(id);
    const done = await requests.load(id);
    expect(done!.state).toBe('complete');
    // The worker died after finishing but before the ack: the item comes back, first as a plain
    // delivery (consumer recreated) and as a redelivery.
    await processor.process(id);
    await processor.process(id, 2);
    const after = await requests.load(id);
    expect({ state: after!.state, updatedAt: after!.updatedAt, bundleKey: after!.bundleKey, states: after!.states.length }).toEqual({
      state: 'complete',
      updatedAt: done!.updatedAt,
      bundleKey: done!.bundleKey,
      states: 2,
    });
    expect((await eventsFor(id, 2)).map((e) => e.state)).toEqual(['in_progress', 'complete']);
  }, 90_000);

  it('the same work item delivered twice through the queue to a worker: one completion, one complete event', async () => {
    const id = await submit();
    // A second copy of the item (a different message id, so JetStream keeps both), then a worker.
    await jetstream(h.app.nats).publish(h.app.subjects.of('work.source-cache.request'), json.encode({ id }), { msgID: `dup-${id}` });
    const w = await startHarness(null, { DOCKYARD_ROLE: 'worker', DOCKYARD_CACHITO_WORKER_CONCURRENCY: '2' }, h.env);
    try {
      expect((await h.settle(id)).state).toBe('complete');
      // Both copies are consumed (the work-queue stream empties), then the events are counted.
      await untilStreamHolds(h.app.nats, h.app.subjects.stream('SOURCE_CACHE_WORK'), 0);
      const seen = await eventsFor(id, 2);
      expect(seen.map((e) => e.state)).toEqual(['in_progress', 'complete']);
      expect(new Set(seen.map((e) => e.id)).size).toBe(2);
    } finally {
      // The worker shares the env: close the app only (its streams are the api harness's to drop).
      await w.app.close();
    }
  }, 90_000);

  it('a finish racing a redelivery that fails it: exactly one final state and one final event', async () => {
    const id = await submit();
    const { processor } = h.app.sourceCache;
    await Promise.all([processor.process(id), processor.process(id, 4)]);
    const body = await get(id);
    expect(['complete', 'failed']).toContain(body.state);
    expect(body.state_history.map((s: { state: string }) => s.state)).toEqual([body.state, 'in_progress']);
    expect((await eventsFor(id, 2)).map((e) => e.state)).toEqual(['in_progress', body.state]);
  }, 90_000);

  it('a work item delivered more than DOCKYARD_CACHITO_MAX_ATTEMPTS (3) times ends the request failed as interrupted', async () => {
    const id = await submit();
    await h.app.sourceCache.processor.process(id, 4);
    expect(await get(id)).toMatchObject({
      state: 'failed',
      state_reason: 'The request was interrupted: the workers processing it stopped before finishing, 3 times. Submit the request again to retry it.',
    });
    expect((await eventsFor(id, 2)).map((e) => e.state)).toEqual(['in_progress', 'failed']);
  }, 90_000);

  it('a worker PATCH repeating the current state and reason adds no state and publishes nothing', async () => {
    const id = await submit();
    const patch = (payload: object) => h.app.inject({ method: 'PATCH', url: `/api/v1/requests/${id}`, headers: h.headers(worker), payload });
    expect((await patch({ state: 'failed', state_reason: 'boom' })).statusCode).toBe(200);
    const again = await patch({ state: 'failed', state_reason: 'boom', environment_variables: { A: 'b' } });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ state: 'failed', state_reason: 'boom', environment_variables: { A: 'b' } });
    expect(again.json().state_history.map((s: { state: string }) => s.state)).toEqual(['failed', 'in_progress']);
    expect((await eventsFor(id, 2)).map((e) => e.state)).toEqual(['in_progress', 'failed']);
  }, 90_000);

  it('a state event whose publish fails (events stream briefly missing) commits with the state and is stored once when the stream is back', async () => {
    const id = await submit();
    const jsm = await jetstreamManager(h.app.nats);
    const eventsStream = h.app.subjects.stream('EVENTS');
    await jsm.streams.delete(eventsStream);
    // The request completes although its event cannot be published yet: it waits in the outbox.
    await h.app.sourceCache.processor.process(id);
    expect((await h.app.sourceCache.requests.load(id))!.state).toBe('complete');
    const prisma = h.app.db.prisma as unknown as PrismaClient;
    const waiting = async () => (await prisma.eventOutbox.findMany()).filter((e) => (e.payload as { requestId?: number }).requestId === id);
    expect((await waiting()).map((e) => (e.payload as StateEvent).state)).toEqual(['complete']);

    await h.app.events.ensureStream();
    for (let i = 0; i < 200 && (await waiting()).length; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await waiting()).toEqual([]);
    // Flushes keep running (every 2 s): still one copy.
    await new Promise((r) => setTimeout(r, 2500));
    const info = await jsm.streams.info(eventsStream);
    expect(info.state.messages).toBe(1);
    const stored = await jsm.streams.getMessage(eventsStream, { last_by_subj: h.app.subjects.of('events.source-cache.request.state') });
    expect(stored!.json<StateEvent>()).toMatchObject({ requestId: id, state: 'complete', previousState: 'in_progress' });
  }, 90_000);
});
