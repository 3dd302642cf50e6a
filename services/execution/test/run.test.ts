import yauzl from 'yauzl';
import type { FastifyInstance } from 'fastify';
import Docker from 'dockerode';
import { jetstream } from '@nats-io/jetstream';
import type { PrismaClient } from '../src/generated/prisma/client.js';
import { LABEL_DEPLOYMENT, LABEL_JOB } from '../src/domain/runner.js';
import { alice, multipart, startExecution, until, type Harness } from './helpers.js';

/** Reads a zip into name -> content (directories end with /). */
async function unzip(buf: Buffer): Promise<Record<string, string>> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => yauzl.fromBuffer(buf, { lazyEntries: true }, (err, z) => (err ? reject(err) : resolve(z))));
  const out: Record<string, string> = {};
  await new Promise<void>((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', () => resolve());
    zip.on('entry', (entry: yauzl.Entry) => {
      if (entry.fileName.endsWith('/')) {
        out[entry.fileName] = '';
        return zip.readEntry();
      }
      zip.openReadStream(entry, (err, s) => {
        if (err) return reject(err);
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => {
          out[entry.fileName] = Buffer.concat(chunks).toString();
          zip.readEntry();
        });
      });
    });
    zip.readEntry();
  });
  return out;
}

type Event = { subject: string; payload: Record<string, unknown> };

describe('execution: jobs run in containers on the real Docker engine', () => {
  let h: Harness;
  const events: Event[] = [];
  const watch = (app: FastifyInstance) => {
    const sub = app.nats.subscribe(app.subjects.of('events.execution.>'));
    void (async () => {
      for await (const m of sub) events.push({ subject: m.subject.slice(app.subjects.prefix.length), payload: m.json() });
    })();
  };
  beforeAll(async () => {
    h = await startExecution({ DOCKYARD_EXECUTION_CONCURRENCY: '2' });
    watch(h.app);
  });
  afterAll(async () => h?.close());

  const newPipeline = async (name = 'p') => (await h.app.inject({ method: 'POST', url: '/pipeline', headers: h.as(alice), payload: { name } })).json().id as number;
  const addJob = async (pid: number, fields: Record<string, string>, files: { name: string; body: string }[] = []) => {
    const body = await multipart({ image_id: 'dockyard/busybox:latest', ...fields }, files);
    const res = await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: { ...h.as(alice), ...body.headers }, payload: body.payload });
    expect(res.statusCode).toBe(200);
    return res.json().id as number;
  };
  const job = async (pid: number, jid: number) => (await h.app.inject({ url: `/pipeline/${pid}/job/${jid}`, headers: h.as(alice) })).json()[jid];
  const submit = async (pid: number) => {
    const res = await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    expect(res.statusCode).toBe(200);
    return res.json();
  };
  // A generous ceiling (not a timing assertion): the machine is shared with other test runs.
  const ended = (pid: number, jid: number) =>
    until(async () => {
      const j = await job(pid, jid);
      return ['done', 'failed', 'killed'].includes(j.state) && j;
    }, `job ${jid} to end`, 120_000);
  const finished = (pid: number) => until(async () => events.find((e) => e.subject === 'events.execution.pipeline.finished' && e.payload.pipelineId === pid), `pipeline ${pid} to finish`);
  const states = (jid: number) => events.filter((e) => e.subject === 'events.execution.job.state' && e.payload.jobId === jid).map((e) => e.payload.state);

  it('runs a job with /inbox attachments and serves /outbox as a zip, with usage, logs and events', async () => {
    const pid = await newPipeline();
    const jid = await addJob(pid, { command: 'cat /inbox/file1 > /outbox/copy && mkdir /outbox/sub && echo nested > /outbox/sub/x && echo wrote; echo oops >&2' }, [
      { name: 'file1', body: 'hello from file1\n' },
    ]);
    expect(await submit(pid)).toEqual({ [jid]: 'in_queue' });
    const done = await ended(pid, jid);
    expect(done).toMatchObject({ state: 'done', reason: null });
    expect(done.used_memory).toBeGreaterThanOrEqual(0);
    const res = await h.app.inject({ url: `/pipeline/${pid}/job/${jid}?result`, headers: h.as(alice) });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/zip');
    const files = await unzip(res.rawPayload);
    expect(files).toMatchObject({ copy: 'hello from file1\n', 'sub/x': 'nested\n' });
    const logs = (await h.app.inject({ url: `/execution/${jid}/logs`, headers: h.as(alice) })).json();
    expect(logs.map((l: { logline: string }) => l.logline).sort()).toEqual(['oops', 'wrote']);
    expect(logs[0]).toEqual({ id: expect.any(Number), job: jid, logline: expect.any(String) });
    await finished(pid);
    expect(states(jid)).toEqual(['in_queue', 'running', 'done']);
    // The container is removed once the outcome is stored, before the pipeline is announced finished.
    const left = await new Docker().listContainers({ all: true, filters: { label: [`${LABEL_JOB}=${jid}`, `${LABEL_DEPLOYMENT}=${h.env.env.DOCKYARD_NATS_PREFIX}`] } });
    expect(left).toEqual([]);
    expect(events.find((e) => e.subject === 'events.execution.pipeline.finished' && e.payload.pipelineId === pid)!.payload).toMatchObject({
      result: 'done',
      jobs: { [jid]: 'done' },
      resource: `pipeline:${pid}`,
    });
  });

  it('never follows links out of /outbox into the host', async () => {
    const pid = await newPipeline();
    const jid = await addJob(pid, { command: 'ln -s /etc/hostname /outbox/leak && ln -s / /outbox/root && echo real > /outbox/real' });
    await submit(pid);
    expect((await ended(pid, jid)).state).toBe('done');
    const res = await h.app.inject({ url: `/pipeline/${pid}/job/${jid}?result`, headers: h.as(alice) });
    expect(await unzip(res.rawPayload)).toEqual({ real: 'real\n' });
  });

  it('records CPU seconds, peak memory and block I/O measured while the job ran', async () => {
    const pid = await newPipeline();
    const jid = await addJob(pid, { command: 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/outbox/big bs=1M count=16 conv=fsync 2>/dev/null; echo ok' });
    await submit(pid);
    const done = await ended(pid, jid);
    expect(done.state).toBe('done');
    expect(done.used_cpu).toBeGreaterThan(0.1);
    expect(done.used_memory).toBeGreaterThan(16 * 1024 * 1024);
    expect(done.used_io).toBeGreaterThanOrEqual(0);
    process.stdout.write(`usage: ${JSON.stringify({ cpu: done.used_cpu, memory: done.used_memory, io: done.used_io })}\n`);
  });

  it('runs a pipeline first in, first out; a failure fails the rest with a reason naming it', async () => {
    const pid = await newPipeline();
    const j1 = await addJob(pid, { command: 'echo one' });
    const j2 = await addJob(pid, { command: 'echo two; exit 3' });
    const j3 = await addJob(pid, { command: 'echo three' });
    await submit(pid);
    await finished(pid);
    const order = events
      .filter((e) => e.subject === 'events.execution.job.state' && [j1, j2, j3].includes(e.payload.jobId as number) && e.payload.state !== 'in_queue')
      .map((e) => `${e.payload.jobId}:${e.payload.state}`);
    expect(order).toEqual([`${j1}:running`, `${j1}:done`, `${j2}:running`, `${j2}:failed`, `${j3}:failed`]);
    expect(await job(pid, j2)).toMatchObject({ state: 'failed', reason: 'The command exited with code 3' });
    expect((await job(pid, j3)).reason).toBe(`Job ${j2} earlier in the pipeline failed (The command exited with code 3)`);
    expect((await h.app.inject({ url: `/pipeline/${pid}/job/${j2}?result`, headers: h.as(alice) })).statusCode).toBe(409);
    // A job that wrote nothing to /outbox: an empty zip.
    const empty = await h.app.inject({ url: `/pipeline/${pid}/job/${j1}?result`, headers: h.as(alice) });
    expect([empty.statusCode, empty.headers['content-type']]).toEqual([200, 'application/zip']);
    expect(await unzip(empty.rawPayload)).toEqual({});
  });

  it('a second delivery of a run message to the same worker while it runs the first waits instead of running the jobs again', async () => {
    // Seen in the multi-node run: a prefetched copy redelivered to the same process passed the
    // pipeline lease (same holder) and ran the jobs beside the first, killing them (exit 137).
    const pid = await newPipeline('twice');
    const jobs = [await addJob(pid, { command: 'echo a; sleep 1' }), await addJob(pid, { command: 'echo b; sleep 1' })];
    await submit(pid);
    const prisma = h.app.db.prisma as unknown as PrismaClient;
    const { run } = await prisma.pipeline.findUniqueOrThrow({ where: { id: pid } });
    const copy = { pipelineId: pid, run, actor: 'alice' };
    await jetstream(h.app.nats).publish(h.app.subjects.of('execution.pipeline.run'), JSON.stringify(copy), { msgID: `copy-${pid}` });
    await finished(pid);
    for (const jid of jobs) {
      expect(await job(pid, jid)).toMatchObject({ state: 'done' });
      expect(states(jid).filter((s) => s !== 'in_queue')).toEqual(['running', 'done']);
    }
    const pipelinesFinished = () => events.filter((e) => e.subject === 'events.execution.pipeline.finished' && e.payload.pipelineId === pid).length;
    // The copy is acknowledged once it finds the run finished; it announces nothing.
    await new Promise((r) => setTimeout(r, 3000));
    expect(pipelinesFinished()).toBe(1);
  });

  it('runs a message that arrives before its submission committed, once the commit lands', async () => {
    // The submission publishes inside its transaction (so a process dying after the commit cannot
    // leave a pipeline queued with no message); the worker may see the message first.
    const pid = await newPipeline('early');
    const jid = await addJob(pid, { command: 'echo early' });
    const prisma = h.app.db.prisma as unknown as PrismaClient;
    const { run } = await prisma.pipeline.findUniqueOrThrow({ where: { id: pid } });
    await jetstream(h.app.nats).publish(h.app.subjects.of('execution.pipeline.run'), JSON.stringify({ pipelineId: pid, run: run + 1, actor: 'alice' }));
    await new Promise((r) => setTimeout(r, 2500));
    expect(await job(pid, jid)).toMatchObject({ state: 'ready' });
    await prisma.$transaction([prisma.pipeline.update({ where: { id: pid }, data: { run: run + 1 } }), prisma.job.updateMany({ where: { id: jid }, data: { state: 'in_queue' } })]);
    expect(await ended(pid, jid)).toMatchObject({ state: 'done' });
  });

  it('re-runs a failing job as many times as its retries allow', async () => {
    const pid = await newPipeline();
    const jid = await addJob(pid, { command: 'echo attempt; exit 2', retries: '1' });
    await submit(pid);
    expect(await ended(pid, jid)).toMatchObject({ state: 'failed', reason: 'The command exited with code 2' });
    const lines = (await h.app.inject({ url: `/execution/${jid}/logs`, headers: h.as(alice) })).json().map((l: { logline: string }) => l.logline);
    expect(lines).toEqual(['attempt', '[dockyard] attempt 1 failed: The command exited with code 2; retrying (1 left)', 'attempt']);
  });

  it('runs different pipelines side by side', async () => {
    const [p1, p2] = [await newPipeline('a'), await newPipeline('b')];
    const j1 = await addJob(p1, { command: 'sleep 300' });
    const j2 = await addJob(p2, { command: 'sleep 300' });
    await Promise.all([submit(p1), submit(p2)]);
    // With one pipeline at a time the second would never start while the first sleeps.
    await until(async () => (await job(p1, j1)).state === 'running' && (await job(p2, j2)).state === 'running', 'both pipelines to run at once');
    await h.app.inject({ method: 'POST', url: `/pipeline/${p1}/job/${j1}/kill`, headers: h.as(alice) });
    await h.app.inject({ method: 'POST', url: `/pipeline/${p2}/job/${j2}/kill`, headers: h.as(alice) });
    await Promise.all([finished(p1), finished(p2)]);
  });

  it('kills a running job (POST and Kabuto GET), and the rest of the pipeline fails naming it', async () => {
    const pid = await newPipeline();
    const j1 = await addJob(pid, { command: 'echo started; sleep 300' });
    const j2 = await addJob(pid, { command: 'echo never' });
    const j3q = await addJob(pid, { command: 'echo never either' });
    await submit(pid);
    await until(async () => (await job(pid, j1)).state === 'running', 'job to run');
    const again = await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    expect(again.statusCode).toBe(409);
    const busy = await h.app.inject({ method: 'DELETE', url: `/pipeline/${pid}`, headers: h.as(alice) });
    expect(busy.statusCode).toBe(409);
    // A queued job can be killed before it runs.
    const queued = await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job/${j3q}/kill`, headers: h.as(alice) });
    expect(queued.json()[j3q]).toMatchObject({ state: 'killed', reason: 'Killed by alice before it ran' });
    const killed = await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job/${j1}/kill`, headers: h.as(alice) });
    expect(killed.statusCode).toBe(200);
    expect(killed.json()[j1]).toMatchObject({ state: 'killed', reason: 'Killed by alice' });
    const j2done = await ended(pid, j2);
    expect(j2done).toMatchObject({ state: 'failed', reason: `Job ${j1} earlier in the pipeline was killed (Killed by alice)` });
    await finished(pid);
    expect((await job(pid, j3q)).state).toBe('killed');
    expect(events.find((e) => e.subject === 'events.execution.pipeline.finished' && e.payload.pipelineId === pid)!.payload).toMatchObject({
      result: 'failed',
      jobs: { [j1]: 'killed', [j2]: 'failed', [j3q]: 'killed' },
    });
    const viaGet = await h.app.inject({ url: `/pipeline/${pid}/job/${j1}/kill`, headers: h.as(alice) });
    expect([viaGet.statusCode, viaGet.json().error]).toEqual([409, `Job ${j1} is killed, not running`]);

    // Kabuto's GET form kills too.
    const p2 = await newPipeline();
    const j3 = await addJob(p2, { command: 'sleep 300' });
    await submit(p2);
    await until(async () => (await job(p2, j3)).state === 'running', 'job to run');
    const get = await h.app.inject({ url: `/pipeline/${p2}/job/${j3}/kill`, headers: h.as(alice) });
    expect(get.json()[j3].state).toBe('killed');
  });

  it('ends a job that runs past its timeout failed, and reports an out-of-memory kill as the reason', async () => {
    const pid = await newPipeline();
    const slow = await addJob(pid, { command: 'sleep 60', timeout: '1' });
    await submit(pid);
    expect(await ended(pid, slow)).toMatchObject({ state: 'failed', reason: 'Timed out after 1 s (the container was killed)' });

    const p2 = await newPipeline();
    const hog = await addJob(p2, { command: 'x=$(head -c 60000000 /dev/zero | tr "\\0" a); echo ${#x}', memory: '16m' });
    await submit(p2);
    const oom = await ended(p2, hog);
    expect(oom).toMatchObject({ state: 'failed', reason: `Out of memory: the command exceeded the job's memory limit of ${16 * 1024 * 1024} bytes` });
  });

  it('stores every line of a job printing 100k lines; incremental reads return exactly the later lines', async () => {
    const pid = await newPipeline();
    const jid = await addJob(pid, { command: 'seq 1 100000' });
    await submit(pid);
    expect((await ended(pid, jid)).state).toBe('done');
    const all = (await h.app.inject({ url: `/execution/${jid}/logs`, headers: h.as(alice) })).json() as { id: number; logline: string }[];
    expect(all.length).toBe(100_000);
    expect(all.every((l, i) => l.logline === String(i + 1))).toBe(true);
    expect(all.every((l, i) => i === 0 || l.id > all[i - 1].id)).toBe(true);
    const after = (await h.app.inject({ url: `/execution/${jid}/logs/${all[49_999].id}`, headers: h.as(alice) })).json() as { logline: string }[];
    expect(after.length).toBe(50_000);
    expect(after[0].logline).toBe('50001');
    expect(after[after.length - 1].logline).toBe('100000');
    expect((await h.app.inject({ url: `/execution/${jid}/logs/${all[99_999].id}`, headers: h.as(alice) })).json()).toEqual([]);
  }, 180_000);

  it('keeps odd output: NUL bytes dropped, multi-byte characters whole, a last line without newline', async () => {
    const pid = await newPipeline();
    const jid = await addJob(pid, { command: "printf 'a\\000b\\n'; printf '\\303\\274n\\303\\257c\\303\\270d\\303\\251 \\342\\234\\223\\n'; printf 'tail'" });
    await submit(pid);
    expect((await ended(pid, jid)).state).toBe('done');
    const lines = (await h.app.inject({ url: `/execution/${jid}/logs`, headers: h.as(alice) })).json().map((l: { logline: string }) => l.logline);
    expect(lines).toEqual(['ab', 'ünïcødé ✓', 'tail']);
  });

  it('follows a log as Server-Sent Events: backlog, then live lines, then an end event', async () => {
    const pid = await newPipeline();
    const jid = await addJob(pid, { command: 'echo first; sleep 1; echo second; sleep 1; echo third' });
    const live: string[] = [];
    const sub = h.app.nats.subscribe(h.app.subjects.of(`logs.job.${jid}`));
    void (async () => {
      for await (const m of sub) live.push(m.string());
    })();
    await submit(pid);
    await until(async () => (await job(pid, jid)).state === 'running', 'job to run');
    const res = await h.app.inject({ url: `/execution/${jid}/logs/stream`, headers: h.as(alice) });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const frames = res.payload.split('\n\n').filter(Boolean);
    const logs = frames.filter((f) => f.includes('event: log')).map((f) => JSON.parse(f.split('data: ')[1]).logline);
    expect(logs).toEqual(['first', 'second', 'third']);
    expect(frames[frames.length - 1]).toBe(`event: end\ndata: ${JSON.stringify({ id: jid, state: 'done' })}`);
    // Resume after the first line (what EventSource sends on reconnect).
    const firstId = Number(/^id: (\d+)/.exec(frames[0])![1]);
    const resumed = await h.app.inject({ url: `/execution/${jid}/logs/stream`, headers: { ...h.as(alice), 'last-event-id': String(firstId) } });
    expect(resumed.payload.split('\n\n').filter((f) => f.includes('event: log')).map((f) => JSON.parse(f.split('data: ')[1]).logline)).toEqual(['second', 'third']);
    sub.unsubscribe();
    expect(live.some((m) => m.includes('"end":true'))).toBe(true);
  });
});
