import type { FastifyBaseLogger } from 'fastify';
import type { EventPublisher } from './nats.js';

/** The raw-SQL part of a Prisma client or of one of its interactive transactions. */
export interface SqlExecutor {
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
}

/**
 * The `event_outbox` table a service using {@link EventOutbox} declares in its own migrations:
 * copy this into a `prisma/migrations/<n>_event_outbox/migration.sql`.
 */
export const EVENT_OUTBOX_SQL = `CREATE TABLE "event_outbox" (
    "seq" BIGSERIAL NOT NULL,
    "id" TEXT NOT NULL,
    "subject" TEXT NOT NULL,
    "payload" JSONB NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "event_outbox_pkey" PRIMARY KEY ("seq")
);`;

export interface EventOutboxOptions {
  /** How often waiting events are looked for (those a failed or interrupted flush left). */
  intervalMs?: number;
  /** Events published per query. */
  batch?: number;
}

/**
 * A transactional outbox for events that announce a stored state change (a build finished):
 * {@link add} writes the event in the same transaction as the change, so a process killed, or NATS
 * or the database failing, between the commit and the publish cannot lose it. {@link flush}
 * (called after the commit, and every `intervalMs` by every replica) publishes waiting events
 * oldest first and deletes each once JetStream stored it. Two replicas flushing one row publish
 * the same `msgId`, which the EVENTS stream's duplicate window drops.
 */
export class EventOutbox {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;
  private again = false;
  private readonly intervalMs: number;
  private readonly batch: number;

  constructor(
    private readonly db: SqlExecutor,
    private readonly events: EventPublisher,
    private readonly log: FastifyBaseLogger,
    opts: EventOutboxOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 2_000;
    this.batch = opts.batch ?? 100;
  }

  /** Stores an event; pass the transaction that stores the change it announces. */
  async add(tx: SqlExecutor, subject: string, payload: { id: string; [key: string]: unknown }): Promise<void> {
    await tx.$executeRawUnsafe(`INSERT INTO "event_outbox" ("id", "subject", "payload") VALUES ($1, $2, $3::jsonb)`, payload.id, subject, JSON.stringify(payload));
  }

  /**
   * Publishes every waiting event; resolves to how many were published. Never throws: what could
   * not be published stays for the next flush. Calls made while one runs share it, and it looks again once
   * more (a row stored meanwhile) unless it failed.
   */
  flush(): Promise<number> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let published = 0;
      do {
        this.again = false;
        try {
          published += await this.drain();
        } catch (err) {
          // Not again at once: the next interval retries (NATS or the database may be down a while).
          this.log.warn({ err }, 'outbox events not published yet; will retry');
          break;
        }
      } while (this.again);
      return published;
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async drain(): Promise<number> {
    let published = 0;
    for (;;) {
      const rows = await this.db.$queryRawUnsafe<{ seq: bigint; id: string; subject: string; payload: unknown }[]>(
        `SELECT "seq", "id", "subject", "payload" FROM "event_outbox" ORDER BY "seq" LIMIT ${this.batch}`,
      );
      for (const row of rows) {
        const payload = typeof row.payload === 'string' ? JSON.parse(row.payload) : row.payload;
        await this.events.publish(row.subject, payload, row.id);
        await this.db.$executeRawUnsafe(`DELETE FROM "event_outbox" WHERE "seq" = $1`, row.seq);
        published++;
      }
      if (rows.length < this.batch) return published;
    }
  }

  /** Flushes now and then every `intervalMs` until {@link stop}. */
  start(): void {
    if (this.timer) return;
    void this.flush();
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
