import Docker from 'dockerode';
import type { PrismaClient } from '../src/generated/prisma/client.js';
import { ExecutionEvents } from '../src/domain/events.js';
import { ContainerRunner, LABEL_DEPLOYMENT } from '../src/domain/runner.js';
import { ExecutionWorker } from '../src/worker/worker.js';
import { alice, startExecution, until, type Harness } from './helpers.js';

/**
 * Two execution workers on ONE Docker engine (the multi-node run found a starting worker's sweep
 * ending the other, live worker's jobs as "gone"). Worker A is the harness app's; worker B is a
 * second instance on the same database, NATS prefix and engine, started while A runs a job.
 */
describe('execution: two workers sharing one Docker engine (real Docker, NATS, PostgreSQL)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startExecution();
  });
  afterAll(async () => h?.close());

  const docker = new Docker();
  const containers = async () => docker.listContainers({ all: true, filters: { label: [`${LABEL_DEPLOYMENT}=${h.env.env.DOCKYARD_NATS_PREFIX}`] } });
  const job = async (pid: number, jid: number) => (await h.app.inject({ url: `/pipeline/${pid}/job/${jid}`, headers: h.as(alice) })).json()[jid];
  const lines = async (jid: number) => ((await h.app.inject({ url: `/execution/${jid}/logs`, headers: h.as(alice) })).json() as { logline: string }[]).map((l) => l.logline);

  /** A second worker on the same engine; `start()` returns once its start-up sweep is over. */
  const workerB = async () => {
    const app = h.app;
    const prisma = app.db.prisma as unknown as PrismaClient;
    const engineId = (await app.docker.info()).ID as string;
    const runner = new ContainerRunner(app.docker, prisma, app.blobs, app.nats, app.subjects, app.log, {
      deployment: h.env.env.DOCKYARD_NATS_PREFIX || 'default',
      engineId,
      localCgroups: false,
      filesDir: null,
      pidsLimit: 64,
      maxResultBytes: 1024 ** 2,
    });
    return new ExecutionWorker(prisma, app.nats, app.subjects, new ExecutionEvents(app.outbox, prisma), runner, app.log, { concurrency: 1, ackWaitMs: 5000, engineId });
  };

  /**
   * A submitted one-job pipeline whose job prints "before", waits until /tmp/go exists in its
   * container, then prints "after" (and runs `then`); returns once "before" is stored.
   */
  const waitingJob = async (name: string, then = '') => {
    const pid = (await h.app.inject({ method: 'POST', url: '/pipeline', headers: h.as(alice), payload: { name } })).json().id as number;
    const command = `echo before; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo after${then ? `; ${then}` : ''}`;
    const jid = (await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: h.as(alice), payload: { command, image_id: 'dockyard/busybox:latest' } })).json().id as number;
    await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    await until(async () => (await lines(jid)).includes('before'), 'the first line');
    return { pid, jid };
  };

  /** Lets the waiting job's container go on, then expects the job done with both lines stored once. */
  const releaseAndExpectDone = async (containerId: string, pid: number, jid: number) => {
    await docker.getContainer(containerId).exec({ Cmd: ['touch', '/tmp/go'] }).then((e) => e.start({}));
    const done = await until(async () => {
      const j = await job(pid, jid);
      return ['done', 'failed', 'killed'].includes(j.state) && j;
    }, 'the job to end');
    expect(done.state).toBe('done');
    expect(await lines(jid)).toEqual(['before', 'after']);
  };

  it("a worker starting on the same engine leaves the other worker's running job alone; it finishes done on A", async () => {
    const { pid, jid } = await waitingJob('shared', 'echo kept > /outbox/r');
    const [running] = await containers();
    expect(running.State).toBe('running');
    const prisma = h.app.db.prisma as unknown as PrismaClient;

    // 1. B starts while A's job runs with its container recorded.
    const b1 = await workerB();
    await b1.start();
    await b1.stop();
    expect(await job(pid, jid)).toMatchObject({ state: 'running' });

    // 2. B starts inside the window where A's job row does not name the container A follows (a
    //    retry between removing the failed attempt's container and recording the next, or a
    //    container created but not yet recorded): A's lease on the pipeline still protects it.
    await prisma.job.update({ where: { id: jid }, data: { containerId: 'f'.repeat(64) } });
    const b2 = await workerB();
    await b2.start();
    await b2.stop();
    expect(await job(pid, jid)).toMatchObject({ state: 'running' });
    expect((await containers()).map((c) => c.Id)).toContain(running.Id);
    await prisma.job.update({ where: { id: jid }, data: { containerId: running.Id } });

    await releaseAndExpectDone(running.Id, pid, jid);
    expect((await h.app.inject({ url: `/pipeline/${pid}/job/${jid}?result`, headers: h.as(alice) })).statusCode).toBe(200);
    await until(async () => (await containers()).length === 0, 'the container to be removed');
  });
  it('a worker whose pipeline lease was taken stops running the pipeline; the holder ends the job exactly once', async () => {
    // Seen in the multi-node run: a worker whose renewal came late (PostgreSQL restarted, a loaded
    // machine) went on running the pipeline beside the worker that took the lease over, and the
    // two raced on the next job (one "killed" it). Here the lease is taken from under worker A.
    const prisma = h.app.db.prisma as unknown as PrismaClient;
    const states: string[] = [];
    const sub = h.app.nats.subscribe(h.app.subjects.of('events.execution.job.state'));
    void (async () => {
      for await (const m of sub) states.push(`${m.json<{ jobId: number }>().jobId}:${m.json<{ state: string }>().state}`);
    })();
    const pid = (await h.app.inject({ method: 'POST', url: '/pipeline', headers: h.as(alice), payload: { name: 'lease' } })).json().id as number;
    const add = async (command: string) =>
      (await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: h.as(alice), payload: { command, image_id: 'dockyard/busybox:latest' } })).json().id as number;
    const first = await add('echo before; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo after');
    const second = await add('echo second');
    await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    await until(async () => (await lines(first)).includes('before'), 'the first line');
    const [running] = await containers();

    // Another worker takes the lease (A's renewal "came too late").
    await prisma.$executeRaw`UPDATE pipelines SET lease_owner = 'another-worker', lease_until = now() + interval '1 hour' WHERE id = ${pid}`;
    await docker.getContainer(running.Id).exec({ Cmd: ['touch', '/tmp/go'] }).then((e) => e.start({}));
    await until(async () => (await docker.getContainer(running.Id).inspect()).State.Status === 'exited', 'the container to exit');
    // A neither stores the outcome nor starts the next job while the lease is not its own.
    await new Promise((r) => setTimeout(r, 4000));
    expect(await job(pid, first)).toMatchObject({ state: 'running' });
    expect(await job(pid, second)).toMatchObject({ state: 'in_queue' });

    // The lease holder goes away without renewing: the redelivered run takes over and finishes both.
    await prisma.$executeRaw`UPDATE pipelines SET lease_until = now() - interval '1 second' WHERE id = ${pid}`;
    const done = await until(async () => {
      const j = await job(pid, second);
      return ['done', 'failed', 'killed'].includes(j.state) && j;
    }, 'the second job to end', 60_000);
    expect(done.state).toBe('done');
    expect(await job(pid, first)).toMatchObject({ state: 'done' });
    expect(await lines(first)).toEqual(['before', 'after']);
    await h.app.nats.flush();
    const ofJobs = states.filter((s) => /^\d+:(running|done|failed|killed)$/.test(s) && (s.startsWith(`${first}:`) || s.startsWith(`${second}:`)));
    expect(ofJobs).toEqual([`${first}:running`, `${first}:done`, `${second}:running`, `${second}:done`]);
    sub.unsubscribe();
  }, 120_000);
  it('a started container whose job was never moved to running is followed by the next worker, not run again', async () => {
    // A worker that started the container and stopped before storing "running" (PostgreSQL or NATS
    // away, or the lease lost): the next one used to remove the container and run the command anew.
    const prisma = h.app.db.prisma as unknown as PrismaClient;
    const { pid, jid } = await waitingJob('unrecorded');
    const [started] = await containers();

    // The worker loses the pipeline and the job reads as never started.
    await prisma.$executeRaw`UPDATE pipelines SET lease_owner = 'another-worker', lease_until = now() + interval '1 hour' WHERE id = ${pid}`;
    await prisma.$executeRaw`UPDATE jobs SET state = 'in_queue', started_at = NULL WHERE id = ${jid}`;
    await new Promise((r) => setTimeout(r, 3000));
    await prisma.$executeRaw`UPDATE pipelines SET lease_until = now() - interval '1 second' WHERE id = ${pid}`;
    await until(async () => (await job(pid, jid)).state === 'running', 'the next handling to take the job up');
    // Only the container that already ran can finish: a new one would wait for /tmp/go forever.
    await releaseAndExpectDone(started.Id, pid, jid);
  }, 120_000);
});
