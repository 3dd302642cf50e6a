import { readFile } from 'node:fs/promises';
import type Docker from 'dockerode';

export interface Usage {
  /** CPU seconds. */
  cpu: number;
  /** Peak memory, bytes. */
  memory: number;
  /** Bytes read + written to block devices. */
  io: number;
}

const CGROUP = '/sys/fs/cgroup';

async function readNumber(file: string): Promise<number | null> {
  try {
    return Number((await readFile(file, 'utf8')).trim());
  } catch {
    return null;
  }
}

/**
 * Samples a running container's CPU time, peak memory and block I/O. The cgroup files (v1,
 * cgroupfs driver: `/sys/fs/cgroup/<controller>/docker/<id>`) are read directly when this process
 * shares the engine's host (a few microseconds per sample); otherwise the engine's stats stream
 * (one sample a second) is followed. A cgroup vanishes with its container, so the last sample
 * before the exit is what is recorded: a job shorter than one interval can show zeros.
 */
export class UsageSampler {
  readonly usage: Usage = { cpu: 0, memory: 0, io: 0 };
  private timer: NodeJS.Timeout | null = null;
  private stream: NodeJS.ReadableStream | null = null;

  constructor(
    private readonly container: Docker.Container,
    private readonly intervalMs = 200,
  ) {}

  async start(): Promise<void> {
    const id = this.container.id;
    if ((await readNumber(`${CGROUP}/cpuacct/docker/${id}/cpuacct.usage`)) !== null) {
      await this.sampleCgroup();
      this.timer = setInterval(() => void this.sampleCgroup(), this.intervalMs);
      return;
    }
    try {
      this.stream = (await this.container.stats({ stream: true })) as unknown as NodeJS.ReadableStream;
      let buf = '';
      this.stream.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) this.fromStats(JSON.parse(line));
        }
      });
      this.stream.on('error', () => undefined);
    } catch {
      // No stats at all: the job still runs, with zeros recorded.
    }
  }

  private async sampleCgroup(): Promise<void> {
    const id = this.container.id;
    const [cpu, mem, io] = await Promise.all([
      readNumber(`${CGROUP}/cpuacct/docker/${id}/cpuacct.usage`),
      readNumber(`${CGROUP}/memory/docker/${id}/memory.max_usage_in_bytes`),
      readFile(`${CGROUP}/blkio/docker/${id}/blkio.throttle.io_service_bytes_recursive`, 'utf8').catch(() => null),
    ]);
    if (cpu !== null && cpu / 1e9 > this.usage.cpu) this.usage.cpu = cpu / 1e9;
    if (mem !== null && mem > this.usage.memory) this.usage.memory = mem;
    if (io !== null) {
      const total = /^Total (\d+)$/m.exec(io);
      if (total && Number(total[1]) > this.usage.io) this.usage.io = Number(total[1]);
    }
  }

  private fromStats(s: {
    cpu_stats?: { cpu_usage?: { total_usage?: number } };
    memory_stats?: { max_usage?: number; usage?: number };
    blkio_stats?: { io_service_bytes_recursive?: { op: string; value: number }[] | null };
  }): void {
    const cpu = (s.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e9;
    const mem = s.memory_stats?.max_usage ?? s.memory_stats?.usage ?? 0;
    const io = (s.blkio_stats?.io_service_bytes_recursive ?? []).filter((e) => /^(read|write)$/i.test(e.op)).reduce((a, e) => a + e.value, 0);
    if (cpu > this.usage.cpu) this.usage.cpu = cpu;
    if (mem > this.usage.memory) this.usage.memory = mem;
    if (io > this.usage.io) this.usage.io = io;
  }

  /** One last sample (if the cgroup is still there), then stop. */
  async stop(): Promise<Usage> {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      await this.sampleCgroup();
    }
    (this.stream as unknown as { destroy?: () => void } | null)?.destroy?.();
    return { ...this.usage };
  }
}
