import { readFile, rmdir } from 'node:fs/promises';
import type Docker from 'dockerode';

export interface Usage {
  /** CPU seconds. */
  cpu: number;
  /** Peak memory, bytes. */
  memory: number;
  /** Bytes read + written. */
  io: number;
}

const CGROUP = '/sys/fs/cgroup';
const CONTROLLERS = ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'memory', 'net_cls', 'net_prio', 'perf_event', 'hugetlb', 'pids', 'rdma', 'misc', 'systemd', 'unified'];

async function readNumber(file: string): Promise<number | null> {
  try {
    const n = Number((await readFile(file, 'utf8')).trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

async function blkioTotal(dir: string): Promise<number | null> {
  try {
    const text = await readFile(`${CGROUP}/blkio/${dir}/blkio.throttle.io_service_bytes_recursive`, 'utf8');
    const total = /^Total (\d+)$/m.exec(text);
    return total ? Number(total[1]) : null;
  } catch {
    return null;
  }
}

/** Bytes a process (and the children it reaped) read and wrote at the storage layer. */
async function procIo(pid: number): Promise<number | null> {
  try {
    const text = await readFile(`/proc/${pid}/io`, 'utf8');
    const read = /^read_bytes: (\d+)$/m.exec(text);
    const write = /^write_bytes: (\d+)$/m.exec(text);
    return Number(read?.[1] ?? 0) + Number(write?.[1] ?? 0);
  } catch {
    return null;
  }
}

/** Removes a job's parent cgroup (every controller) once its container is gone; quietly, it may be gone already. */
export async function removeCgroup(parent: string | null | undefined): Promise<void> {
  if (!parent || !parent.startsWith('/dockyard-execution/')) return;
  await Promise.allSettled(CONTROLLERS.map((c) => rmdir(`${CGROUP}/${c}${parent}`)));
}

/**
 * Measures a job's CPU time, peak memory and I/O.
 *
 * Where this process shares the engine's host (cgroup v1 with the cgroupfs driver, as here), every
 * job's container gets its own parent cgroup (`/dockyard-execution/job-...`), which outlives the
 * container: after the exit its counters (hierarchical CPU time, the memory high-water mark,
 * block I/O) are read exactly, then the cgroup is removed. Meanwhile the container's own cgroup and
 * `/proc/<pid>/io` are sampled, so a worker that reattaches still has figures. Elsewhere the
 * engine's stats stream (one sample a second) is followed.
 */
export class UsageSampler {
  readonly usage: Usage = { cpu: 0, memory: 0, io: 0 };
  private timer: NodeJS.Timeout | null = null;
  private stream: NodeJS.ReadableStream | null = null;
  constructor(
    private readonly container: Docker.Container,
    private readonly parent: string | null,
    private readonly pid: number,
    private readonly intervalMs = 200,
  ) {}

  async start(): Promise<void> {
    const id = this.container.id;
    if ((await readNumber(`${CGROUP}/cpuacct/docker/${id}/cpuacct.usage`)) !== null || this.parent) {
      await this.sample();
      this.timer = setInterval(() => void this.sample(), this.intervalMs);
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

  private raise(cpu: number | null, memory: number | null, io: number | null): void {
    if (cpu !== null && cpu > this.usage.cpu) this.usage.cpu = cpu;
    if (memory !== null && memory > this.usage.memory) this.usage.memory = memory;
    if (io !== null && io > this.usage.io) this.usage.io = io;
  }

  private async sample(): Promise<void> {
    const dir = this.parent ? `${this.parent}/${this.container.id}` : `docker/${this.container.id}`;
    const [cpu, mem, blk, proc] = await Promise.all([
      readNumber(`${CGROUP}/cpuacct/${dir}/cpuacct.usage`),
      readNumber(`${CGROUP}/memory/${dir}/memory.max_usage_in_bytes`),
      blkioTotal(dir),
      this.pid ? procIo(this.pid) : Promise.resolve(null),
    ]);
    this.raise(cpu === null ? null : cpu / 1e9, mem, Math.max(blk ?? 0, proc ?? 0));
  }

  private fromStats(s: {
    cpu_stats?: { cpu_usage?: { total_usage?: number } };
    memory_stats?: { max_usage?: number; usage?: number };
    blkio_stats?: { io_service_bytes_recursive?: { op: string; value: number }[] | null };
  }): void {
    const io = (s.blkio_stats?.io_service_bytes_recursive ?? []).filter((e) => /^(read|write)$/i.test(e.op)).reduce((a, e) => a + e.value, 0);
    this.raise((s.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e9, s.memory_stats?.max_usage ?? s.memory_stats?.usage ?? 0, io);
  }

  /** Stops sampling; after the container exited, reads the exact totals from its parent cgroup. */
  async stop(exited: boolean): Promise<Usage> {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      if (!exited) await this.sample();
    }
    (this.stream as unknown as { destroy?: () => void } | null)?.destroy?.();
    if (exited && this.parent) {
      const [cpu, mem, blk] = await Promise.all([
        readNumber(`${CGROUP}/cpuacct${this.parent}/cpuacct.usage`),
        readNumber(`${CGROUP}/memory${this.parent}/memory.max_usage_in_bytes`),
        blkioTotal(this.parent.slice(1)),
      ]);
      this.raise(cpu === null ? null : cpu / 1e9, mem, blk);
    }
    return { ...this.usage };
  }
}
