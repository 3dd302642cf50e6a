import type { NatsConnection } from '@nats-io/transport-node';
import { json, type Subjects } from '@dockyard/kit';
import type { PrismaClient } from '../generated/prisma/client.js';

/**
 * A build's output: each line goes out on `logs.build.<id>` at once and is appended to the
 * `build_logs` table in small batches (every 200 ms or 200 lines), so the log outlives the worker.
 */
export class LogSink {
  private pending: { buildId: string; platform: string | null; line: string }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private seq = 0;
  readonly lines: string[] = [];

  constructor(
    private readonly prisma: PrismaClient,
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly buildId: string,
  ) {}

  line(text: string, platform: string | null = null): void {
    const line = text.replace(/\r$/, '');
    this.lines.push(line);
    this.pending.push({ buildId: this.buildId, platform, line });
    if (!this.nc.isClosed()) this.nc.publish(this.subjects.of(`logs.build.${this.buildId}`), json.encode({ seq: ++this.seq, platform, line }));
    if (this.pending.length >= 200) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), 200);
  }

  /** Writes what is pending; batches are written in order. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = [];
    if (batch.length) this.writing = this.writing.then(() => this.prisma.buildLog.createMany({ data: batch }).then(() => undefined));
    return this.writing;
  }

  /** Flushes and tells live followers the build is over. */
  async end(result: string): Promise<void> {
    await this.flush();
    if (!this.nc.isClosed()) this.nc.publish(this.subjects.of(`logs.build.${this.buildId}`), json.encode({ end: true, result }));
  }
}
