import { jetstreamManager } from '@nats-io/jetstream';
import { ExecutionEvents } from '../src/domain/events.js';
import { startExecution, until, type Harness } from './helpers.js';

/**
 * Events are published after the state is stored; the multi-node run lost three job-state events
 * published while a NATS node (or the stream's leader) was down. A failing publish is retried,
 * with the same message id, until it gets through (bounded).
 */
describe('execution: an event whose publish fails at first still arrives, once (real NATS JetStream)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startExecution();
  });
  afterAll(async () => h?.close());

  const payload = (jobId: number) => ({ actor: 'alice', ownerId: 'id-alice', jobId, pipelineId: 1, state: 'failed' as const, previousState: 'running' as const, reason: 'r', exitCode: 1 });

  it('retries while the EVENTS stream is missing and stores the event exactly once when it is back', async () => {
    const jsm = await jetstreamManager(h.app.nats);
    const stream = h.app.subjects.stream('EVENTS');
    await jsm.streams.delete(stream);
    const events = new ExecutionEvents(h.app.events, h.app.log, { firstDelayMs: 50, maxDelayMs: 200 });
    let settled = false;
    const published = events.jobState(payload(4242)).finally(() => (settled = true));
    await until(async () => events.failedAttempts >= 2, 'the publish to fail and be retried');
    expect(settled).toBe(false);
    await h.app.events.ensureStream();
    await published;
    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(1);
    const msg = await jsm.streams.getMessage(stream, { last_by_subj: h.app.subjects.of('events.execution.job.state') });
    expect(msg?.json<{ jobId: number; state: string }>()).toMatchObject({ jobId: 4242, state: 'failed' });
  });

  it('gives up with the error once its retry time is spent (bounded)', async () => {
    const jsm = await jetstreamManager(h.app.nats);
    const stream = h.app.subjects.stream('EVENTS');
    await jsm.streams.delete(stream);
    const events = new ExecutionEvents(h.app.events, h.app.log, { retryForMs: 300, firstDelayMs: 50, maxDelayMs: 100 });
    await expect(events.jobState(payload(4343))).rejects.toThrow();
    expect(events.failedAttempts).toBeGreaterThan(0);
    await h.app.events.ensureStream();
  });
});
