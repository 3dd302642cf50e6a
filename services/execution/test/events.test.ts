import { jetstreamManager } from '@nats-io/jetstream';
import { ExecutionEvents } from '../src/domain/events.js';
import type { PrismaClient } from '../src/generated/prisma/client.js';
import { startExecution, until, type Harness } from './helpers.js';

/**
 * Events commit with the state they announce (the service's event outbox) and are published after
 * the commit. The multi-node runs lost events published while a NATS node (or the stream's leader)
 * was down, or by a process killed between its commit and its publish.
 */
describe('execution: events commit with their change and reach the stream once (real PostgreSQL, NATS JetStream)', () => {
  let h: Harness;
  let prisma: PrismaClient;
  let events: ExecutionEvents;
  beforeAll(async () => {
    h = await startExecution();
    prisma = h.app.db.prisma as unknown as PrismaClient;
    events = new ExecutionEvents(h.app.outbox, prisma);
  });
  afterAll(async () => h?.close());

  const payload = (jobId: number) => ({ actor: 'alice', ownerId: 'id-alice', jobId, pipelineId: 1, state: 'failed' as const, previousState: 'running' as const, reason: 'r', exitCode: 1 });
  const waiting = async () => (await prisma.eventOutbox.findMany()).length;

  it('keeps an event while the EVENTS stream is missing and publishes it exactly once when the stream is back', async () => {
    const jsm = await jetstreamManager(h.app.nats);
    const stream = h.app.subjects.stream('EVENTS');
    await jsm.streams.delete(stream);
    await prisma.$transaction(async (tx) => events.jobState(payload(4242), tx));
    await events.flush();
    expect(await waiting()).toBe(1);

    await h.app.events.ensureStream();
    // The service's own outbox flushes every 2 s; ours flushes too: JetStream keeps one copy.
    await Promise.all([until(async () => (await waiting()) === 0, 'the outbox to empty'), events.flush()]);
    await new Promise((r) => setTimeout(r, 2500));
    const info = await jsm.streams.info(stream);
    expect(info.state.messages).toBe(1);
    const msg = await jsm.streams.getMessage(stream, { last_by_subj: h.app.subjects.of('events.execution.job.state') });
    expect(msg?.json<{ jobId: number; state: string }>()).toMatchObject({ jobId: 4242, state: 'failed', resource: 'job:4242' });
  });

  it('announces nothing for a change that was rolled back', async () => {
    await expect(
      prisma.$transaction(async (tx) => {
        await events.jobState(payload(4343), tx);
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    await events.flush();
    expect(await waiting()).toBe(0);
    const jsm = await jetstreamManager(h.app.nats);
    const msg = await jsm.streams.getMessage(h.app.subjects.stream('EVENTS'), { last_by_subj: h.app.subjects.of('events.execution.job.state') });
    expect(msg?.json<{ jobId: number }>().jobId).toBe(4242);
  });
});
