import { connect, headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JsMsg,
  type ConsumerMessages,
} from '@nats-io/jetstream';
import type { FastifyBaseLogger } from 'fastify';
import { HttpError } from './errors.js';

export { headers, nanos, type NatsConnection, type JsMsg };

// The stream replicas each connection's deployment asked for (DOCKYARD_NATS_REPLICAS), so every
// ensureStream on that connection creates its streams alike without threading the setting through.
const streamReplicas = new WeakMap<NatsConnection, number>();

/** The replicas streams created on `nc` get (set by {@link connectNats}; 1 when not set). */
export function replicasOf(nc: NatsConnection): number {
  return streamReplicas.get(nc) ?? 1;
}

/**
 * Connects to NATS, reconnecting forever: a broker restart must not take a service down.
 * `servers` may list several comma-separated URLs (a cluster); the client picks one and moves to
 * another when it goes away (and learns the rest of the cluster from the server it reached).
 */
export async function connectNats(servers: string, name: string, opts: { replicas?: number } = {}): Promise<NatsConnection> {
  const nc = await connect({
    servers: servers.split(',').map((s) => s.trim()).filter(Boolean),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: false,
  });
  if (opts.replicas) streamReplicas.set(nc, opts.replicas);
  return nc;
}

const codec = { encode: (v: unknown) => new TextEncoder().encode(JSON.stringify(v)), decode: <T>(b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as T };
export const json = codec;

/** The subject namespace of one deployment: DOCKYARD_NATS_PREFIX lets test runs share a server. */
export class Subjects {
  constructor(readonly prefix: string) {}
  /** The wire subject of a catalog subject, e.g. `events.build.build.finished`. */
  of(subject: string): string {
    return this.prefix + subject;
  }
  /** A stream name, unique per prefix (stream names cannot contain dots). */
  stream(name: string): string {
    return (this.prefix.replace(/\./g, '_') + name).toUpperCase();
  }
}

/** Answers a request/reply subject; the handler's thrown errors go back as `{error}`. */
export function serveRequests<Req, Res>(
  nc: NatsConnection,
  subject: string,
  handler: (req: Req) => Promise<Res>,
  log: FastifyBaseLogger,
  queue = 'workers',
): void {
  const sub = nc.subscribe(subject, { queue });
  void (async () => {
    for await (const msg of sub) {
      let reply: unknown;
      try {
        reply = { ok: true, value: await handler(codec.decode<Req>(msg.data)) };
      } catch (err) {
        log.error({ err, subject }, 'request handler failed');
        reply = { ok: false, error: err instanceof Error ? err.message : String(err) };
      }
      msg.respond(codec.encode(reply));
    }
  })();
}

/** Sends a request on a subject served by {@link serveRequests} and unwraps the answer. */
export async function request<Req, Res>(nc: NatsConnection, subject: string, body: Req, timeoutMs = 5000): Promise<Res> {
  // No answer (timeout, no responders, connection closed) means the other service is unavailable: a
  // 503 the caller may retry, not a 500. A reply that says it failed is the other side's error.
  const msg = await nc.request(subject, codec.encode(body), { timeout: timeoutMs }).catch((err: Error) => {
    throw new HttpError(503, `${subject.split('.').slice(-2).join('.')} did not answer (${err.message}); try again`);
  });
  const reply = codec.decode<{ ok: boolean; value?: Res; error?: string }>(msg.data);
  if (!reply.ok) throw new Error(reply.error ?? `${subject} failed`);
  return reply.value as Res;
}

/** Creates or updates the EVENTS stream and publishes typed events with de-duplication ids. */
export class EventPublisher {
  private readonly js: JetStreamClient;
  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
  ) {
    this.js = jetstream(nc);
  }

  async ensureStream(): Promise<void> {
    await ensureStream(this.nc, this.subjects.stream('EVENTS'), [this.subjects.of('events.>')], RetentionPolicy.Limits);
  }

  /** Publishes once: JetStream drops a repeat of the same `msgId` inside its duplicate window. */
  async publish(subject: string, payload: unknown, msgId: string): Promise<void> {
    await this.js.publish(this.subjects.of(subject), codec.encode(payload), { msgID: msgId });
  }
}

/**
 * Adds a stream if missing, or updates its subjects (and raises its replicas) if it exists.
 * Replicas default to the connection's DOCKYARD_NATS_REPLICAS ({@link replicasOf}). They are never
 * lowered here: one process started without the setting (default 1) would otherwise shrink a
 * cluster's stream to a single copy that dies with its node; an operator lowers them by hand.
 */
export async function ensureStream(
  nc: NatsConnection,
  name: string,
  subjects: string[],
  retention: RetentionPolicy = RetentionPolicy.Workqueue,
  replicas = replicasOf(nc),
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  let info;
  try {
    info = await jsm.streams.info(name);
  } catch {
    try {
      await jsm.streams.add({ name, subjects, retention, storage: StorageType.File, num_replicas: replicas, duplicate_window: nanos(120_000) });
      return;
    } catch (err) {
      // Another replica of the service created it at the same moment: update it below.
      info = await jsm.streams.info(name).catch(() => {
        throw err;
      });
    }
  }
  const keep = Math.max(info.config.num_replicas, replicas);
  if (info.config.subjects?.join() !== subjects.join() || info.config.num_replicas !== keep) {
    await jsm.streams.update(name, { ...info.config, subjects, num_replicas: keep });
  }
}

export interface WorkQueueOptions<T> {
  nc: NatsConnection;
  stream: string;
  subject: string;
  /** The stream's subjects when it holds more than `subject` (several consumers on one stream). */
  streamSubjects?: string[];
  durable: string;
  /** Does the work and stores its result; the message is acknowledged only after it resolves. */
  handle: (payload: T, msg: JsMsg) => Promise<void>;
  log: FastifyBaseLogger;
  ackWaitMs?: number;
  concurrency?: number;
  /** After this many deliveries the message is terminated rather than retried forever. */
  maxDeliver?: number;
}

/**
 * A work-queue consumer that acknowledges only after `handle` resolved (the result is stored), so a
 * worker killed mid-job leaves the message to be redelivered to another worker after `ackWaitMs`.
 * A failing handler gets a delayed nak (retry). Returns a function that stops consuming.
 */
export async function consumeWorkQueue<T>(opts: WorkQueueOptions<T>): Promise<() => Promise<void>> {
  const { nc, stream, subject, durable, handle, log } = opts;
  await ensureStream(nc, stream, opts.streamSubjects ?? [subject]);
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.add(stream, {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(opts.ackWaitMs ?? 30_000),
    max_deliver: opts.maxDeliver ?? 5,
    filter_subject: subject,
  });
  const consumer = await jetstream(nc).consumers.get(stream, durable);
  const messages: ConsumerMessages = await consumer.consume({ max_messages: opts.concurrency ?? 1 });
  const inFlight = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const msg of messages) {
      const job = (async () => {
        // Keep the message ours while long work runs, so it is not redelivered to a second worker.
        const keepAlive = setInterval(() => msg.working(), Math.max(1000, (opts.ackWaitMs ?? 30_000) / 3));
        try {
          await handle(codec.decode<T>(msg.data), msg);
          msg.ack();
        } catch (err) {
          log.error({ err, subject, redelivered: msg.redelivered }, 'work item failed; will retry');
          msg.nak(1000);
        } finally {
          clearInterval(keepAlive);
        }
      })();
      inFlight.add(job);
      void job.finally(() => inFlight.delete(job));
      if (inFlight.size >= (opts.concurrency ?? 1)) await Promise.race(inFlight);
    }
  })();
  return async () => {
    await messages.close();
    await loop.catch(() => undefined);
    await Promise.allSettled(inFlight);
  };
}
