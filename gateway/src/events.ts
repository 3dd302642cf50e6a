import { createHash, randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DeliverPolicy, jetstream, jetstreamManager, type Consumer, type ConsumerMessages } from '@nats-io/jetstream';
import { EventPublisher, PermissionsClient, badRequest, json, type Identity, type NatsConnection, type Subjects } from '@dockyard/kit';
import { mayRead, parseSubjectFilter, subjectMatches, type EventPayload, type PermissionChecker } from './events-access.js';
import { parseCredential } from './credentials.js';

export interface EventsOptions {
  nc: NatsConnection;
  subjects: Subjects;
  /** Defaults to a kit PermissionsClient (decisions cached, dropped on grant changes). */
  perms?: PermissionChecker;
  /** Interval of the `: ping` comment keeping proxies from closing an idle stream. */
  pingMs?: number;
  /**
   * Back-pressure: with more than `maxBufferBytes` queued for a client the relay waits for it to
   * drain, and drops it (final comment; it resumes with Last-Event-ID) if it has not within `stallMs`.
   */
  maxBufferBytes?: number;
  stallMs?: number;
  /** Messages one connection's consumer pulls ahead of what it has relayed. */
  batch?: number;
}

/** What the relay exposes to the gateway (tests and shutdown). */
export interface EventsRelay {
  /** Open SSE connections on this gateway process. */
  readonly connections: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    eventsRelay: EventsRelay;
  }
}

const SEQ = /^\d{1,15}$/;
const decoder = new TextDecoder();
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

interface Connection {
  /** sha256 of the API token the stream was opened with (a revocation ends it). */
  tokenHash: string | null;
  close(comment?: string): Promise<void>;
}

/** The token whose revocation must end a stream: `sage`/`Bearer` tokens, or a Basic password that may be one. */
function tokenHashOf(request: FastifyRequest): string | null {
  try {
    const parsed = parseCredential(request.headers.authorization, undefined);
    if (parsed.kind !== 'resolve') return null;
    const c = parsed.credential;
    return c.scheme === 'token' ? sha256(c.token) : c.scheme === 'basic' ? sha256(c.password) : null;
  } catch {
    return null;
  }
}

/** The resume point: `Last-Event-ID` header (EventSource) or `?last_event_id=`; null when neither. */
function lastEventId(request: FastifyRequest): number | null {
  const header = request.headers['last-event-id'];
  const query = (request.query as { last_event_id?: string }).last_event_id;
  const raw = (Array.isArray(header) ? header[0] : header) ?? query;
  if (raw === undefined || raw === '') return null;
  if (!SEQ.test(raw.trim())) throw badRequest('last_event_id (or the Last-Event-ID header) must be the id of an event: a non-negative integer');
  return Number(raw.trim());
}

/**
 * `GET /events`: Server-Sent Events relayed from the EVENTS JetStream stream, one ordered
 * ephemeral consumer per connection (from `Last-Event-ID` + 1, or from now), each event checked
 * against the caller's identity before it is sent (events-access.ts; docs/events.md).
 */
export const eventsPlugin: FastifyPluginAsync<EventsOptions> = async (app, opts) => {
  const { nc, subjects } = opts;
  const pingMs = opts.pingMs ?? 15_000;
  const maxBufferBytes = opts.maxBufferBytes ?? 1024 * 1024;
  const batch = opts.batch ?? 256;
  const stallMs = opts.stallMs ?? 30_000;
  const perms = opts.perms ?? new PermissionsClient(nc, subjects);
  const stream = subjects.stream('EVENTS');
  await new EventPublisher(nc, subjects).ensureStream();
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const open = new Set<Connection>();

  app.decorate('eventsRelay', {
    get connections() {
      return open.size;
    },
  });

  // A revoked token ends the streams opened with it at once (their identity was resolved at connect).
  const revoked = nc.subscribe(subjects.of('events.permissions.token.revoked'));
  void (async () => {
    for await (const msg of revoked) {
      const { tokenHash } = json.decode<{ tokenHash?: string }>(msg.data);
      for (const c of open) if (tokenHash && c.tokenHash === tokenHash) void c.close('credential revoked');
    }
  })().catch(() => undefined);

  // Open streams never end by themselves: end them so the server can close.
  app.addHook('preClose', async () => {
    revoked.unsubscribe();
    await Promise.all([...open].map((c) => c.close('server shutting down; reconnect with Last-Event-ID')));
  });

  app.get('/events', async (request, reply) => {
    let patterns: string[];
    try {
      patterns = parseSubjectFilter((request.query as { subjects?: string }).subjects);
    } catch (err) {
      throw badRequest((err as Error).message);
    }
    const resumeAfter = lastEventId(request);
    const caller = request.caller.identity;

    // Always a start sequence (never "deliver new"): the ordered consumer recreates itself from
    // its cursor after a NATS reconnect, and with "new" an empty cursor would replay the stream.
    const startSeq = resumeAfter !== null ? resumeAfter + 1 : (await jsm.streams.info(stream)).state.last_seq + 1;
    // nats-server 2.9 takes one filter subject: one pattern is filtered by the server, several here.
    const serverFilter = patterns.length === 1 ? subjects.of(patterns[0]) : subjects.of('events.>');
    const consumer = await js.consumers.get(stream, {
      name_prefix: `sse_${randomBytes(8).toString('hex')}`,
      filter_subjects: serverFilter,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: startSeq,
      inactive_threshold: 60_000,
    });
    let messages: ConsumerMessages;
    try {
      messages = await consumer.consume({ max_messages: batch });
    } catch (err) {
      await consumer.delete().catch(() => undefined);
      throw err;
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-dockyard-service': 'gateway',
    });
    // Sent once the consumer exists: anything published from here on reaches this stream.
    res.write(': connected\n\n');

    const conn = relay({ res, messages, consumer, caller, patterns, prefix: subjects.prefix, perms, pingMs, maxBufferBytes, stallMs, log: request.log, tokenHash: tokenHashOf(request), onClosed: () => open.delete(conn) });
    open.add(conn);
    request.raw.on('close', () => void conn.close());
    res.on('close', () => void conn.close());
    // The client may have gone while the consumer was being created.
    if (request.raw.destroyed || res.destroyed) void conn.close();
  });
};

/** Resolves true when `res` drains, false when it closes or `ms` pass first. */
function drained(res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

// Registered on the gateway itself (as fastify-plugin would): `app.eventsRelay` and the route are its.
(eventsPlugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;

interface RelayArgs {
  res: ServerResponse;
  messages: ConsumerMessages;
  consumer: Consumer;
  caller: Identity;
  patterns: string[];
  prefix: string;
  perms: PermissionChecker;
  pingMs: number;
  maxBufferBytes: number;
  stallMs: number;
  log: FastifyBaseLogger;
  tokenHash: string | null;
  onClosed: () => void;
}

/** Pumps one connection: reads its consumer in order, filters, writes SSE frames until closed. */
function relay(a: RelayArgs): Connection {
  const { res } = a;
  let closing: Promise<void> | null = null;
  const ping = setInterval(() => {
    if (!res.destroyed) res.write(': ping\n\n');
  }, a.pingMs);

  const close = (comment?: string): Promise<void> =>
    (closing ??= (async () => {
      clearInterval(ping);
      a.onClosed();
      // Not awaited: closing resolves only once the relay loop has left the iterator, and that
      // loop may be the caller.
      void a.messages.close().catch(() => undefined);
      // The ordered consumer would linger until its inactivity threshold; remove it now.
      await a.consumer.delete().catch(() => undefined);
      if (!res.destroyed && !res.writableEnded) {
        if (comment) {
          res.end(`: ${comment}\n\n`);
          // A client that stopped reading never drains the final comment: cut it off.
          setTimeout(() => res.destroy(), 30_000).unref();
        } else res.end();
      }
    })());

  const wantsAll = a.patterns.length === 1;
  let dropped: string | undefined;
  void (async () => {
    for await (const m of a.messages) {
      if (closing) break;
      const subject = m.subject.slice(a.prefix.length);
      if (!wantsAll && !a.patterns.some((p) => subjectMatches(p, subject))) continue;
      const text = decoder.decode(m.data);
      let payload: EventPayload;
      try {
        payload = JSON.parse(text) as EventPayload;
      } catch {
        continue; // not an event in the catalog's shape: nobody's to read
      }
      if (payload === null || typeof payload !== 'object') continue;
      if (!(await mayRead(subject, payload, a.caller, a.perms))) continue;
      if (closing) break;
      // Events pulled in one batch go out in one chunk: cork until the event loop turns.
      if (!res.writableCorked) {
        res.cork();
        setImmediate(() => res.uncork());
      }
      res.write(`id: ${m.seq}\nevent: ${subject}\n${text.split('\n').map((l) => `data: ${l}\n`).join('')}\n`);
      // Back-pressure: past the limit, stop reading the consumer (JetStream keeps the events) until
      // the client drains; one that does not is dropped rather than buffered without bound, and
      // reconnects with the last id it received, missing nothing.
      if (res.writableNeedDrain && res.writableLength > a.maxBufferBytes && !(await drained(res, a.stallMs))) {
        if (res.destroyed) break;
        a.log.info({ buffered: res.writableLength }, 'events: slow client dropped');
        dropped = `too far behind (over ${a.maxBufferBytes} bytes queued for ${a.stallMs} ms); reconnect with Last-Event-ID`;
        break;
      }
    }
  })()
    .catch((err) => a.log.warn({ err }, 'events: relay stopped'))
    .finally(() => void close(dropped));

  return { tokenHash: a.tokenHash, close };
}
