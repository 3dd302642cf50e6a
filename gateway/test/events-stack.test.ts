/**
 * GET /events end to end on the whole platform (startStack: every service, the gateway, real
 * Docker): a real Kabuto job's state events reach its owner and not another user, and a stream
 * opened with a token ends when that token is revoked.
 */
import { startStack, until, type Stack } from '@dockyard/kit/testing';
import { SseClient } from './events-client.js';

describe('GET /events on the running platform', () => {
  let stack: Stack;
  const open: SseClient[] = [];
  const owner = { authorization: 'sage testuser_token' };
  const other = { authorization: 'sage testuser2_token' };

  // DOCKYARD_TEST_STACK_BASE: use a stack already running (seeded test users; `deploy/local/stack.sh up`
  // with DOCKYARD_SEED_TEST_USERS=1) instead of starting one, e.g. when the machine is too loaded
  // for stack.sh's 120 s readiness wait.
  const reuse = process.env.DOCKYARD_TEST_STACK_BASE;
  beforeAll(async () => {
    if (reuse) stack = { base: reuse, stop: async () => undefined } as unknown as Stack;
    // On a loaded shared machine a first start can miss stack.sh's 120 s readiness wait: try twice.
    else stack = await startStack().catch(() => startStack());
  }, 400_000);
  afterAll(async () => {
    for (const c of open) c.close();
    await stack?.stop();
  });

  it("relays a real Kabuto job's state events to its owner only", async () => {
    const { base } = stack;
    const mine = await SseClient.open(`${base}/events?subjects=events.execution.>`, owner);
    const theirs = await SseClient.open(`${base}/events`, other);
    open.push(mine, theirs);
    expect([mine.status, theirs.status]).toEqual([200, 200]);

    const { id: pipeline } = (await (await fetch(`${base}/pipeline`, { method: 'POST', headers: owner, body: new URLSearchParams({ name: 'events-e2e' }) })).json()) as { id: number };
    const form = new FormData();
    form.set('command', 'echo hello from events');
    form.set('image_id', 'dockyard/busybox:latest');
    const job = await fetch(`${base}/pipeline/${pipeline}/job`, { method: 'POST', headers: owner, body: form });
    expect(job.status).toBe(200);
    const { id: jobId } = (await job.json()) as { id: number };
    expect((await fetch(`${base}/pipeline/${pipeline}/submit`, { method: 'POST', headers: owner })).status).toBe(200);

    await mine.waitFor(() => mine.events.some((e) => e.event === 'events.execution.pipeline.finished'), 'pipeline.finished reaches the owner', 180_000);
    const states = mine.events
      .filter((e) => e.event === 'events.execution.job.state')
      .map((e) => JSON.parse(e.data) as { jobId: number; state: string; pipelineId: number })
      .filter((e) => e.jobId === Number(jobId));
    expect(states.map((s) => s.state)).toEqual(['in_queue', 'running', 'done']);
    expect(states.every((s) => s.pipelineId === Number(pipeline))).toBe(true);
    const seqs = mine.events.map((e) => Number(e.id));
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);

    // A marker testuser2 may read, published after the job's events: once it arrives, the job's
    // events (earlier in the stream) have been decided for this connection too.
    const created = await fetch(`${base}/auth/tokens`, { method: 'POST', headers: { ...other, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'events-e2e' }) });
    expect(created.status).toBeLessThan(300);
    const token = (await created.json()) as { id: string; token: string };
    const withToken = await SseClient.open(`${base}/events`, { authorization: `sage ${token.token}` });
    open.push(withToken);
    expect((await fetch(`${base}/auth/tokens/${token.id}`, { method: 'DELETE', headers: other })).status).toBeLessThan(300);
    await theirs.waitFor(() => theirs.events.some((e) => e.event === 'events.permissions.token.revoked'), 'token.revoked reaches testuser2', 60_000);
    expect(theirs.events.filter((e) => e.event.startsWith('events.execution.'))).toEqual([]);

    // The stream opened with the revoked token is ended.
    await withToken.waitFor(() => withToken.ended, 'the revoked token ends its stream', 60_000);
    expect(withToken.comments).toContain('credential revoked');
    await until(async () => ((await fetch(`${base}/events`, { headers: { authorization: `sage ${token.token}` } })).status === 401 ? true : undefined), 'revoked token refused', 30_000);
  }, 300_000);
});
