/**
 * GET /events against real NATS JetStream and the real permissions service (in-process): events
 * published with kit EventPublisher under the run's prefix reach exactly the callers who may read
 * them, filtered by ?subjects, resumed by Last-Event-ID, and each connection's consumer goes away
 * with it. Waits are on events arriving (a marker event every stream may read), never on time.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { EventPublisher, Subjects, connectNats, request as natsRequest, type NatsConnection } from '@dockyard/kit';
import { testEnv, until, type TestEnv } from '@dockyard/kit/testing';
import { buildGateway } from '../src/app.js';
import { loadGatewayConfig } from '../src/config.js';
import { startServices, type RunningServices } from './stack.js';
import { SseClient } from './events-client.js';

const TOKENS = { owner: 'sage testuser_token', other: 'sage testuser2_token', admin: 'sage admin_token' } as const;
const NOWHERE = 'http://127.0.0.1:9';
const MAX_BUFFER_KB = 64;

describe('GET /events (real NATS JetStream and permissions service)', () => {
  let env: TestEnv;
  let services: RunningServices;
  let gateway: FastifyInstance;
  let base: string;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let subjects: Subjects;
  let events: EventPublisher;
  const ids: Record<'owner' | 'other', string> = { owner: '', other: '' };
  const open: SseClient[] = [];

  const connect = async (query = '', headers: Record<string, string> = {}) => {
    const client = await SseClient.open(`${base}/events${query}`, headers);
    open.push(client);
    return client;
  };
  const as = (who: keyof typeof TOKENS) => ({ authorization: TOKENS[who] });

  /** Publishes an event with the envelope filled in; returns its payload id. */
  const publish = async (subject: string, fields: Record<string, unknown>) => {
    const id = randomUUID();
    await events.publish(subject, { id, occurredAt: new Date().toISOString(), actor: null, ...fields }, id);
    return id;
  };
  const jobState = (ownerId: string, jobId: number) =>
    publish('events.execution.job.state', { resource: `job:${jobId}`, ownerId, jobId, pipelineId: 1, state: 'running', previousState: 'in_queue', reason: null, exitCode: null });
  const appSubmitted = (namespace: string, name: string) =>
    publish('events.registry.app.submitted', { resource: `repository:${namespace}/${name}`, appId: randomUUID(), namespace, name, version: '1.0', owner: 'testuser', commit: null, forced: false });
  /** An event every caller may read: once a stream has it, everything published before was decided. */
  const marker = () => appSubmitted('pub', 'app');
  const consumerCount = async () => {
    let n = 0;
    for await (const _ of jsm.consumers.list(subjects.stream('EVENTS'))) n++;
    return n;
  };

  beforeAll(async () => {
    env = testEnv();
    services = await startServices(env, { registry: NOWHERE, build: NOWHERE, execution: NOWHERE, 'source-cache': NOWHERE, process: NOWHERE });
    const config = loadGatewayConfig({ ...env.env, ...services.upstreamEnv, DOCKYARD_PORT: '0', DOCKYARD_RATE_LIMIT: '0', DOCKYARD_EVENTS_MAX_BUFFER_KB: String(MAX_BUFFER_KB), DOCKYARD_EVENTS_STALL_MS: '5000' });
    gateway = (await buildGateway(config)).app;
    await gateway.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(gateway.server.address() as AddressInfo).port}`;

    subjects = new Subjects(env.env.DOCKYARD_NATS_PREFIX);
    nc = await connectNats(env.env.DOCKYARD_NATS_URL, 'events-test');
    jsm = await jetstreamManager(nc);
    events = new EventPublisher(nc, subjects);
    await events.ensureStream();

    for (const who of ['owner', 'other'] as const) {
      const res = await fetch(`${base}/auth/whoami`, { headers: as(who) });
      ids[who] = ((await res.json()) as { id: string }).id;
    }
    // pub/app: testuser's, public (AllUsers READ); priv/app: testuser's, private.
    for (const repo of ['pub/app', 'priv/app']) {
      await natsRequest(nc, subjects.of('permissions.own'), { resource: { type: 'repository', name: repo }, owner: 'testuser' });
    }
    const grant = await fetch(`${base}/permissions/pub/app`, {
      method: 'PUT',
      headers: { ...as('owner'), 'content-type': 'application/json' },
      body: JSON.stringify({ operation: 'add', granteeType: 'GROUP', grantee: 'AllUsers', permission: 'READ' }),
    });
    expect(grant.status).toBe(200);
  }, 120_000);

  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });

  afterAll(async () => {
    for (const c of open.splice(0)) c.close();
    await gateway?.close();
    await services?.close();
    await jsm?.streams.delete(subjects.stream('EVENTS')).catch(() => undefined);
    await nc?.drain();
    await env?.cleanup();
  });

  it('sends a job owner their job events, not another user, all to an admin, none to anonymous', async () => {
    const [owner, other, admin, anonymous] = await Promise.all([connect('', as('owner')), connect('', as('other')), connect('', as('admin')), connect()]);
    for (const c of [owner, other, admin, anonymous]) expect(c.status).toBe(200);
    const mine = await jobState(ids.owner, 1);
    const theirs = await jobState(ids.other, 2);
    const end = await marker();
    await Promise.all([owner, other, admin, anonymous].map((c) => c.waitForEvent(end)));

    const received = (c: SseClient) => c.payloads<{ id: string }>().map((p) => p.id);
    expect(received(owner)).toEqual([mine, end]);
    expect(received(other)).toEqual([theirs, end]);
    expect(received(admin)).toEqual([mine, theirs, end]);
    expect(received(anonymous)).toEqual([end]);

    // The SSE frame: id = stream sequence, event = catalog subject without the prefix, data = the payload as published.
    const frame = owner.events[0];
    expect(frame.id).toMatch(/^\d+$/);
    expect(frame.event).toBe('events.execution.job.state');
    expect(JSON.parse(frame.data)).toMatchObject({ id: mine, ownerId: ids.owner, jobId: 1, state: 'running' });
    expect(Number(owner.events[1].id)).toBeGreaterThan(Number(frame.id));
  });

  it('sends public repository events to anonymous callers and private ones only to who may READ', async () => {
    const [owner, other, anonymous] = await Promise.all([connect('', as('owner')), connect('', as('other')), connect()]);
    const secret = await appSubmitted('priv', 'app');
    const open = await appSubmitted('pub', 'app');
    await Promise.all([owner, other, anonymous].map((c) => c.waitForEvent(open)));
    expect(owner.payloads<{ id: string }>().map((p) => p.id)).toEqual([secret, open]);
    expect(other.payloads<{ id: string }>().map((p) => p.id)).toEqual([open]);
    expect(anonymous.payloads<{ id: string }>().map((p) => p.id)).toEqual([open]);
  });

  it('applies the per-subject rules: owner logins, account events, unknown subjects admin-only', async () => {
    const [owner, admin] = await Promise.all([connect('', as('owner')), connect('', as('admin'))]);
    const expected = [
      await publish('events.process.process.state', { resource: 'process:x', owner: 'testuser', uuid: randomUUID(), status: 'queued' }),
      await publish('events.build.build.queued', { resource: 'image-build:b1', owner: 'testuser', buildId: 'b1', kind: 'kabuto' }),
      await publish('events.build.build.queued', { resource: 'repository:priv/app', owner: 'someone', buildId: 'b2', kind: 'ecr' }),
      await publish('events.source-cache.request.state', { resource: 'cachito-request:1', owner: 'testuser', requestId: 1, state: 'complete' }),
      await publish('events.permissions.token.revoked', { resource: 'token:1', tokenId: '1', login: 'testuser', tokenHash: '0'.repeat(64) }),
    ];
    const hidden = [
      await publish('events.process.process.state', { resource: 'process:y', owner: 'testuser2', uuid: randomUUID(), status: 'queued' }),
      await publish('events.build.build.queued', { resource: 'image-build:b3', owner: 'testuser2', buildId: 'b3', kind: 'kabuto' }),
      await publish('events.permissions.user.registered', { resource: 'user:9', userId: '9', login: 'testuser2', via: 'admin' }),
      await publish('events.nobody.knows.this', { resource: 'thing:1', owner: 'testuser' }),
    ];
    const end = await marker();
    await Promise.all([owner, admin].map((c) => c.waitForEvent(end)));
    expect(owner.payloads<{ id: string }>().map((p) => p.id)).toEqual([...expected, end]);
    expect(admin.payloads<{ id: string }>().map((p) => p.id).sort()).toEqual([...expected, ...hidden, end].sort());
  });

  it('filters by ?subjects (one pattern or several, NATS wildcards)', async () => {
    const [jobs, several] = await Promise.all([
      connect('?subjects=events.execution.job.>', as('admin')),
      connect(`?subjects=${encodeURIComponent('events.registry.*.submitted, events.process.>')}`, as('admin')),
    ]);
    const job = await jobState(ids.owner, 3);
    const proc = await publish('events.process.process.state', { resource: 'process:z', owner: 'testuser', uuid: randomUUID(), status: 'queued' });
    await publish('events.build.build.queued', { resource: 'image-build:b4', owner: 'testuser', buildId: 'b4', kind: 'kabuto' });
    const end = await marker();
    const lastJob = await jobState(ids.owner, 4);
    await jobs.waitForEvent(lastJob);
    await several.waitForEvent(end);
    expect(jobs.payloads<{ id: string }>().map((p) => p.id)).toEqual([job, lastJob]);
    expect(several.payloads<{ id: string }>().map((p) => p.id)).toEqual([proc, end]);
    expect(new Set(several.events.map((e) => e.event))).toEqual(new Set(['events.process.process.state', 'events.registry.app.submitted']));
  });

  it.each([
    ['build.>', 'subjects'],
    ['events', 'subjects'],
    ['events..x', 'subjects'],
    ['events.>.x', 'subjects'],
    ['events.a b', 'subjects'],
    ['events.build.>,foo.>', 'subjects'],
  ])('refuses the filter %j with a 400 naming the field', async (filter, field) => {
    const res = await fetch(`${base}/events?subjects=${encodeURIComponent(filter)}`, { headers: as('owner') });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string };
    expect(body.error).toContain(field);
  });

  it('refuses a resume id that is not a sequence', async () => {
    for (const [query, headers] of [['?last_event_id=abc', {}], ['', { 'last-event-id': '-1' }], ['', { 'last-event-id': 'uuid-like' }]] as const) {
      const res = await fetch(`${base}/events${query}`, { headers: { ...as('owner'), ...headers } });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error).toMatch(/last_event_id/);
    }
  });

  it('resumes after Last-Event-ID with exactly the missed readable events, in order, then live ones', async () => {
    const admin = await connect('', as('admin'));
    const first = await jobState(ids.owner, 10);
    const missed = [await jobState(ids.owner, 11), await appSubmitted('priv', 'app'), await jobState(ids.owner, 12)];
    await jobState(ids.other, 13);
    await appSubmitted('pub', 'app').then((id) => missed.push(id));
    await admin.waitForEvent(missed[3]);
    const firstSeq = admin.events.find((e) => e.data.includes(first))!.id;

    const lives: string[] = [];
    for (const how of ['header', 'query'] as const) {
      const resumed = how === 'header' ? await connect('', { ...as('owner'), 'last-event-id': firstSeq }) : await connect(`?last_event_id=${firstSeq}`, as('owner'));
      await resumed.waitForEvent(missed[3]);
      const live = await jobState(ids.owner, 14);
      lives.push(live);
      await resumed.waitForEvent(live);
      const got = resumed.payloads<{ id: string }>().map((p) => p.id);
      // The second round also gets the first round's live event: it came after `first` too.
      expect(got).toEqual([...missed, ...lives]);
      const seqs = resumed.events.map((e) => Number(e.id));
      expect(seqs.every((s, i) => s > Number(firstSeq) && (i === 0 || s > seqs[i - 1]))).toBe(true);
    }
  });

  it('without a resume id sends only events published after connecting', async () => {
    const before = await jobState(ids.owner, 20);
    const owner = await connect('', as('owner'));
    const after = await jobState(ids.owner, 21);
    await owner.waitForEvent(after);
    expect(owner.payloads<{ id: string }>().map((p) => p.id)).toEqual([after]);
    expect(before).not.toBe(after);
  });

  it("removes a connection's consumer when the client disconnects", async () => {
    await until(async () => ((await consumerCount()) === 0 ? true : undefined), 'no consumers left from earlier tests', 60_000);
    const a = await connect('', as('owner'));
    const b = await connect('?subjects=events.build.>', as('admin'));
    expect(await consumerCount()).toBe(2);
    expect(gateway.eventsRelay.connections).toBe(2);
    a.close();
    await until(async () => ((await consumerCount()) === 1 ? true : undefined), 'consumer removed after disconnect', 60_000);
    b.close();
    await until(async () => ((await consumerCount()) === 0 && gateway.eventsRelay.connections === 0 ? true : undefined), 'every consumer removed', 60_000);
  });

  it('drops a client that stops reading (buffer past the limit, not drained), with a final comment; it resumes by id', async () => {
    const slow = await connect('?subjects=events.bulk.>', as('admin'));
    const reader = await connect('?subjects=events.bulk.>', as('admin'));
    slow.pause();
    const pad = 'x'.repeat(16 * 1024);
    // Far more than the socket buffers and the limit can hold; the reading client gets all of it.
    const total = 1500;
    let last = '';
    for (let i = 0; i < total; i++) last = await publish('events.bulk.data.chunk', { resource: 'bulk:1', i, pad });
    await reader.waitForEvent(last, 120_000);
    expect(reader.events).toHaveLength(total);
    await until(async () => (gateway.eventsRelay.connections === 1 ? true : undefined), 'slow client dropped', 60_000);
    await until(async () => ((await consumerCount()) === 1 ? true : undefined), "slow client's consumer removed", 60_000);

    // Reading again, it finds what was queued, the final comment, and the end of the stream...
    slow.resume();
    await slow.waitFor(() => slow.ended, 'the dropped stream ends');
    expect(slow.comments.some((c) => c.startsWith('too far behind'))).toBe(true);
    expect(slow.events.length).toBeLessThan(total);
    expect(slow.payloads<{ i: number }>().map((p) => p.i)).toEqual([...Array(slow.events.length).keys()]);
    // ...and resuming from the last id it got delivers exactly the rest.
    const rest = await connect('?subjects=events.bulk.>', { ...as('admin'), 'last-event-id': slow.events.at(-1)!.id });
    await rest.waitForEvent(last, 120_000);
    expect(rest.payloads<{ i: number }>().map((p) => p.i)).toEqual([...Array(total).keys()].slice(slow.events.length));
  }, 240_000);
});
