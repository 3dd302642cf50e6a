import type { NatsConnection } from '@nats-io/transport-node';
import { json, type Subjects } from '@dockyard/kit';
import type { PrismaClient } from '../generated/prisma/client.js';

const MAX_LINES = 200_000;
const MAX_LINE = 16 * 1024;

/**
 * A build's output: each line goes out on `logs.build.<id>` at once and is appended to the
 * `build_logs` table in small batches (every 200 ms or 200 lines), so the log outlives the worker.
 */
export class LogSink {
  private pending: { buildId: string; platform: string | null; line: string }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private seq = 0;
  private count = 0;
  private error: Error | null = null;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly buildId: string,
  ) {}

  line(text: string, platform: string | null = null): void {
    // Bounded: a runaway build cannot fill the database with its output.
    if (++this.count > MAX_LINES) {
      if (this.count > MAX_LINES + 1) return;
      text = `[log truncated after ${MAX_LINES} lines]`;
    }
    let line = text.replace(/\r$/, '');
    if (line.length > MAX_LINE) line = `${line.slice(0, MAX_LINE)}… [line truncated]`;
    this.pending.push({ buildId: this.buildId, platform, line });
    if (!this.nc.isClosed()) this.nc.publish(this.subjects.of(`logs.build.${this.buildId}`), json.encode({ seq: ++this.seq, platform, line }));
    if (this.pending.length >= 200) this.write();
    else if (!this.timer) this.timer = setTimeout(() => this.write(), 200);
  }

  /** Starts writing what is pending (batches in order); a failed write is kept for flush() to report. */
  private write(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = [];
    if (!batch.length) return;
    this.writing = this.writing.then(() =>
      this.prisma.buildLog.createMany({ data: batch }).then(
        () => undefined,
        (err: Error) => void (this.error = err),
      ),
    );
  }

  /** Writes what is pending; rejects if any line could not be stored. */
  async flush(): Promise<void> {
    this.write();
    await this.writing;
    if (this.error) throw this.error;
  }
}
