import type { NatsConnection, Subjects } from '@dockyard/kit';
import { json } from '@dockyard/kit';
import type { JobLogMessage } from '@dockyard/contracts';
import type { PrismaClient } from '../generated/prisma/client.js';

export interface LogLineView {
  id: number;
  job: number;
  logline: string;
}

/** Lines queued but not stored beyond which the job's log stream is paused. */
const HIGH_WATER = 20_000;

/** The longest line kept; longer ones are cut (a job cannot fill the database with one line). */
const MAX_LINE = 16 * 1024;

/** Reads a job's stored lines, optionally only those after a given id. */
export async function readLogs(prisma: PrismaClient, jobId: number, after = 0, limit?: number): Promise<LogLineView[]> {
  const rows = await prisma.jobLog.findMany({
    where: { jobId, id: { gt: BigInt(after) } },
    orderBy: { id: 'asc' },
    take: limit,
    select: { id: true, line: true },
  });
  return rows.map((r) => ({ id: Number(r.id), job: jobId, logline: r.line }));
}

/**
 * Stores a job's lines in batches as they arrive (one INSERT per batch, flushed when it is full or
 * after a short delay), then publishes each stored batch on `logs.job.<id>`. Lines are durable
 * before anyone sees them live, and a following client never sees a line the database lacks.
 */
export class LogWriter {
  private pending: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private failed: Error | null = null;
  /** Lines written but not yet stored. */
  private queued = 0;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    readonly jobId: number,
    private readonly opts: { batch?: number; delayMs?: number } = {},
  ) {}

  /**
   * Queues a line; false when the writer should wait for {@link drained} (too many lines not yet
   * stored). NUL characters, which PostgreSQL text cannot hold, are dropped.
   */
  write(line: string): boolean {
    const clean = line.includes('\u0000') ? line.replace(/\u0000/g, '') : line;
    this.pending.push(clean.length > MAX_LINE ? clean.slice(0, MAX_LINE) : clean);
    this.queued++;
    if (this.pending.length >= (this.opts.batch ?? 1000)) this.flushSoon(0);
    else this.flushSoon(this.opts.delayMs ?? 20);
    return this.queued < HIGH_WATER;
  }

  /** Resolves once every line queued so far is stored (back-pressure for a fast job). */
  async drained(): Promise<void> {
    this.flushSoon(0);
    await this.flushing;
  }

  private flushSoon(delay: number): void {
    if (delay === 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.flushing = this.flushing.then(() => this.store());
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flushing = this.flushing.then(() => this.store());
      }, delay);
    }
  }

  private async store(): Promise<void> {
    if (!this.pending.length) return;
    const lines = this.pending;
    this.pending = [];
    try {
      this.queued -= lines.length;
      // nextval() runs in row order, so sorted ids match the lines' order.
      const rows = await this.prisma.$queryRaw<{ id: bigint }[]>`
        INSERT INTO job_logs (job_id, line) SELECT ${this.jobId}::int, l FROM unnest(${lines}::text[]) WITH ORDINALITY AS t(l, n) ORDER BY n RETURNING id`;
      const ids = rows.map((r) => Number(r.id)).sort((a, b) => a - b);
      const msg: JobLogMessage = { lines: lines.map((logline, i) => ({ id: ids[i], job: this.jobId, logline })) };
      this.nc.publish(this.subjects.of(`logs.job.${this.jobId}`), json.encode(msg));
    } catch (err) {
      this.failed = err as Error;
    }
  }

  /** Stores everything written so far; throws if a batch could not be stored. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flushing = this.flushing.then(() => this.store());
    await this.flushing;
    if (this.failed) throw this.failed;
  }

  /** Announces the end of the job to followers (after the last lines). */
  end(state: string): void {
    const msg: JobLogMessage = { end: true, id: this.jobId, state };
    this.nc.publish(this.subjects.of(`logs.job.${this.jobId}`), json.encode(msg));
  }
}
