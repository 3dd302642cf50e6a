import type { NatsConnection } from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import { json } from './nats.js';

export interface ConcurrentServeOptions {
  /** Queue group shared by the replicas (default `workers`, as serveRequests). */
  queue?: string;
  /** Requests handled at once by this process; more wait in arrival order (default 64). */
  maxInFlight?: number;
}

/**
 * Like {@link serveRequests}, but handles up to `maxInFlight` requests at once instead of one
 * after the other: for read-only questions (permission checks, identity look-ups) whose handler
 * waits on the database, so one slow query does not hold up every caller behind it. Same wire
 * format (`{ok, value}` / `{ok: false, error}`). Use serveRequests where order matters.
 */
export function serveRequestsConcurrently<Req, Res>(
  nc: NatsConnection,
  subject: string,
  handler: (req: Req) => Promise<Res>,
  log: FastifyBaseLogger,
  opts: ConcurrentServeOptions = {},
): void {
  const max = Math.max(1, opts.maxInFlight ?? 64);
  let inFlight = 0;
  const waiting: { data: Uint8Array; respond: (data: Uint8Array) => boolean }[] = [];
  const run = (msg: { data: Uint8Array; respond: (data: Uint8Array) => boolean }) => {
    inFlight++;
    void (async () => {
      let reply: unknown;
      try {
        reply = { ok: true, value: await handler(json.decode<Req>(msg.data)) };
      } catch (err) {
        log.error({ err, subject }, 'request handler failed');
        reply = { ok: false, error: err instanceof Error ? err.message : String(err) };
      }
      msg.respond(json.encode(reply));
      inFlight--;
      const next = waiting.shift();
      if (next) run(next);
    })();
  };
  nc.subscribe(subject, {
    queue: opts.queue ?? 'workers',
    callback: (err, msg) => {
      if (err) return log.error({ err, subject }, 'subscription failed');
      if (inFlight < max) run(msg);
      else waiting.push(msg);
    },
  });
}
