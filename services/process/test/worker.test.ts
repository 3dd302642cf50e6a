import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { json } from '@dockyard/kit';
import { rawDocument } from '@dockyard/contracts';
import { testEnv, type TestEnv } from '@dockyard/kit/testing';
import { buildProcessApp } from '../src/app.js';
import { loadProcessConfig } from '../src/config.js';
import { as, ended, removeImages, startProcess, startServices, user, zipOf } from './helpers.js';

describe('The process worker: a worker stopped mid-process, the time limit, state events', () => {
  let env: TestEnv;
  let app: FastifyInstance;
  let build: FastifyInstance;
  const alice = user('alice');
  const events: Record<string, unknown>[] = [];
  const settings = { DOCKYARD_PROCESS_ACK_WAIT_MS: '3000', DOCKYARD_PROCESS_CONCURRENCY: '1' };
  const restart = async (extra: Record<string, string> = {}) => {
    await app.close();
    // Same schema as before: a new worker of the same deployment.
    app = await buildProcessApp(loadProcessConfig({ ...env.serviceEnv('process', { ...settings, ...extra }), DOCKYARD_DB_SCHEMA: `${env.id}_process` }));
    await app.ready();
  };
  const slow = (marker: string, seconds: number) =>
    zipOf({ Dockerfile: `FROM dockyard/busybox:latest\nLABEL dockyard.prefix=${env.id}.\nRUN echo ${marker} && sleep ${seconds}\n` });
  const logOf = async (uuid: string) => (await app.inject({ url: `/api/process/log/${uuid}`, headers: as(env, alice) })).body;
  const waitLog = async (uuid: string, text: string) => {
    for (let i = 0; i < 240 && !(await logOf(uuid)).includes(text); i++) await new Promise((r) => setTimeout(r, 250));
  };

  beforeAll(async () => {
    env = testEnv();
    ({ app, build } = await startServices(env, settings));
    const sub = build.nats.subscribe(build.subjects.of('events.process.process.state'));
    void (async () => {
      for await (const m of sub) events.push(json.decode(m.data));
    })();
  });
  afterAll(async () => {
    await app?.close();
    await build?.close();
    await removeImages(env);
    await env.cleanup();
  });

  it('a process whose worker stopped mid-way is taken over by another worker', async () => {
    const uuid = await startProcess(app, env, alice, '/api/recording/create', await slow('step-running', 8));
    await waitLog(uuid, 'step-running');
    await restart();
    const status = await ended(app, env, alice, uuid, 120_000);
    expect(status).toMatchObject({ status: 'processed' });
    const log = await logOf(uuid);
    expect(log).toContain('This worker is shutting down; the process goes back to the queue');
    expect(log).toContain('retrying (attempt 2 of 2)');
  }, 150_000);

  it('a process over the time limit fails saying so', async () => {
    await restart({ DOCKYARD_PROCESS_TIMEOUT_S: '2' });
    const uuid = await startProcess(app, env, alice, '/api/recording/create', await slow('long-step', 30));
    expect(await ended(app, env, alice, uuid, 60_000)).toMatchObject({ status: 'failed', reason: 'The process exceeded the time limit of 2 s' });
    expect(await logOf(uuid)).toMatch(/Build \S+ queued in the build service/);
  }, 90_000);

  it('publishes every state change in the ProcessState shape', async () => {
    await build.nats.flush();
    const doc = rawDocument('events') as { components: { schemas: Record<string, { 'x-subject'?: string }> } };
    const ajv = new Ajv2020({ strict: false });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema(schema, name);
    const validate = ajv.getSchema('ProcessState')!;
    expect(events.length).toBeGreaterThanOrEqual(6);
    for (const e of events) expect({ valid: validate(e), errors: validate.errors ?? null }).toEqual({ valid: true, errors: null });
    const first = events.find((e) => e.status === 'processed')!;
    const chain = events.filter((e) => e.uuid === first.uuid).map((e) => [e.previousStatus, e.status]);
    expect(chain).toEqual([
      [null, 'queued'],
      ['queued', 'processing'],
      ['processing', 'processing'],
      ['processing', 'processed'],
    ]);
    expect(first).toMatchObject({ actor: 'alice', kind: 'recording-define', resource: `process:${first.uuid}` });
  });
});
