import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { LABEL_DEPLOYMENT } from '../src/domain/runner.js';
import { GONE } from '../src/worker/worker.js';
import { alice, startExecution, until, type Harness } from './helpers.js';

describe('execution: a worker stopped mid-job (real Docker, NATS, PostgreSQL)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startExecution();
  });
  afterAll(async () => h?.close());

  const newPipeline = async () => (await h.app.inject({ method: 'POST', url: '/pipeline', headers: h.as(alice), payload: { name: 'r' } })).json().id as number;
  const addJob = async (pid: number, command: string) =>
    (await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: h.as(alice), payload: { command, image_id: 'dockyard/busybox:latest' } })).json().id as number;
  const job = async (pid: number, jid: number) => (await h.app.inject({ url: `/pipeline/${pid}/job/${jid}`, headers: h.as(alice) })).json()[jid];
  const lines = async (jid: number) => ((await h.app.inject({ url: `/execution/${jid}/logs`, headers: h.as(alice) })).json() as { logline: string }[]).map((l) => l.logline);
  const containers = async () => new Docker().listContainers({ all: true, filters: { label: [`${LABEL_DEPLOYMENT}=${h.env.env.DOCKYARD_NATS_PREFIX}`] } });

  it('reattaches to a container still running after the service restarts; the job and its pipeline finish', async () => {
    const pid = await newPipeline();
    const j1 = await addJob(pid, 'echo before; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo after; echo kept > /outbox/r');
    const j2 = await addJob(pid, 'echo next');
    await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    await until(async () => (await lines(j1)).includes('before'), 'the first line');
    await h.app.close(); // the worker stops following; the container keeps running
    const [running] = await containers();
    expect(running.State).toBe('running');
    // The job goes on while no worker watches, then the new one picks it up.
    await new Docker().getContainer(running.Id).exec({ Cmd: ['touch', '/tmp/go'] }).then((e) => e.start({}));
    await h.restart();
    const done = await until(async () => {
      const j = await job(pid, j2);
      return ['done', 'failed'].includes(j.state) && j;
    }, 'the pipeline to finish');
    expect(done.state).toBe('done');
    expect(await job(pid, j1)).toMatchObject({ state: 'done' });
    expect(await lines(j1)).toEqual(['before', 'after']);
    const zip = await h.app.inject({ url: `/pipeline/${pid}/job/${j1}?result`, headers: h.as(alice) });
    expect(zip.statusCode).toBe(200);
    await until(async () => (await containers()).length === 0, 'the containers to be removed');
  });

  it('ends a job failed with the reason when its container is gone after the restart', async () => {
    const pid = await newPipeline();
    const j1 = await addJob(pid, 'echo before; sleep 300');
    const j2 = await addJob(pid, 'echo never');
    await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    await until(async () => (await lines(j1)).includes('before'), 'the first line');
    await h.app.close();
    for (const c of await containers()) await new Docker().getContainer(c.Id).remove({ force: true });
    await h.restart();
    const failed = await until(async () => {
      const j = await job(pid, j2);
      return j.state === 'failed' && j;
    }, 'the pipeline to end');
    expect(await job(pid, j1)).toMatchObject({ state: 'failed', reason: GONE });
    expect(failed.reason).toBe(`Job ${j1} earlier in the pipeline failed (${GONE})`);
  });

  it('takes over from a worker process killed outright (no goodbye): its claim expires and the job is reattached', async () => {
    await h.app.close(); // only the child process below takes work
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: dir,
      env: { ...process.env, ...h.serviceEnv, DOCKYARD_PORT: String(port), NODE_OPTIONS: '' },
      stdio: 'ignore',
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      await until(() => fetch(`${base}/healthz`).then((r) => r.ok, () => false), 'the worker process to listen');
      const call = async (method: string, url: string, body?: object) => {
        const res = await fetch(base + url, {
          method,
          headers: { ...h.as(alice), ...(body ? { 'content-type': 'application/json' } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        });
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        return (await res.json()) as any;
      };
      const pid = (await call('POST', '/pipeline', { name: 'crash' })).id;
      const jid = (await call('POST', `/pipeline/${pid}/job`, { command: 'echo before; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo after; echo kept > /outbox/r', image_id: 'dockyard/busybox:latest' })).id;
      await call('POST', `/pipeline/${pid}/submit`);
      await until(async () => ((await call('GET', `/execution/${jid}/logs`)) as { logline: string }[]).some((l) => l.logline === 'before'), 'the first line');
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const [running] = await containers();
      await new Docker().getContainer(running.Id).exec({ Cmd: ['touch', '/tmp/go'] }).then((e) => e.start({}));
      await h.restart();
      const done = await until(async () => {
        const j = await job(pid, jid);
        return ['done', 'failed'].includes(j.state) && j;
      }, 'the job to end');
      expect(done.state).toBe('done');
      expect(await lines(jid)).toEqual(['before', 'after']);
      expect((await h.app.inject({ url: `/pipeline/${pid}/job/${jid}?result`, headers: h.as(alice) })).statusCode).toBe(200);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
