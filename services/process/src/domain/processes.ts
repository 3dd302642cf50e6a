import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { json, type EventPublisher, type Identity, type Subjects } from '@dockyard/kit';
import { randomUUID } from 'node:crypto';
import type { PrismaClient, Process } from '../generated/prisma/client.js';

export type ProcessKind = 'recording-define' | 'recording-build' | 'sbom-define';
export type ProcessStatus = 'queued' | 'processing' | 'processed' | 'failed';

export const WORK_SUBJECT = 'work.process';
export const WORK_STREAM = 'PROCESS_WORK';

/** The status shape of the REE API. */
export function statusView(p: Process) {
  return {
    uuid: p.uuid,
    tag: p.tag,
    status: p.status as ProcessStatus,
    download_endpoint: `/api/process/download/${p.uuid}`,
    download_log_endpoint: `/api/log/download/${p.uuid}`,
    reason: p.reason,
  };
}

/** Who may see a process: its owner and admins. */
export const visibleTo = (p: Process, who: Identity) => who.admin || (who.id !== null && p.ownerId === who.id);

/** Processes in the database, their logs, their queue and their state events. */
export class Processes {
  constructor(
    readonly prisma: PrismaClient,
    readonly nc: NatsConnection,
    readonly subjects: Subjects,
    readonly events: EventPublisher,
  ) {}

  async create(data: { uuid: string; tag: string | null; kind: ProcessKind; owner: Identity; dockerfile: string; inputKey: string; inputSha: string }): Promise<Process> {
    const p = await this.prisma.process.create({
      data: {
        uuid: data.uuid,
        tag: data.tag,
        kind: data.kind,
        status: 'queued',
        ownerId: data.owner.id ?? '',
        ownerLogin: data.owner.login ?? '',
        dockerfile: data.dockerfile,
        inputKey: data.inputKey,
        inputSha: data.inputSha,
      },
    });
    await this.announce(p, null);
    await jetstream(this.nc).publish(this.subjects.of(WORK_SUBJECT), json.encode({ uuid: p.uuid }), { msgID: `process-${p.uuid}` });
    return p;
  }

  get(uuid: string): Promise<Process | null> {
    return this.prisma.process.findUnique({ where: { uuid } });
  }

  /** Moves a process from one of `from` to `status`; false when it was in another state already. */
  async transition(uuid: string, from: ProcessStatus[], status: ProcessStatus, data: Partial<Pick<Process, 'reason' | 'outputKey' | 'startedAt' | 'finishedAt'>> & { attempts?: { increment: number } } = {}): Promise<Process | null> {
    const before = await this.get(uuid);
    const { count } = await this.prisma.process.updateMany({ where: { uuid, status: { in: from } }, data: { status, ...data } });
    if (!count) return null;
    const p = await this.get(uuid);
    if (p) await this.announce(p, before?.status ?? null);
    return p;
  }

  /** `events.process.process.state` (payload ProcessState in openapi/events.yaml). */
  private async announce(p: Process, previousStatus: string | null): Promise<void> {
    const id = randomUUID();
    await this.events
      .publish(
        'events.process.process.state',
        {
          id,
          occurredAt: new Date().toISOString(),
          actor: p.ownerLogin || null,
          resource: `process:${p.uuid}`,
          owner: p.ownerLogin,
          uuid: p.uuid,
          tag: p.tag,
          kind: p.kind,
          status: p.status,
          previousStatus,
          reason: p.reason,
        },
        id,
      )
      .catch(() => undefined);
  }

  async logText(uuid: string): Promise<string> {
    const rows = await this.prisma.processLog.findMany({ where: { processUuid: uuid }, orderBy: { id: 'asc' }, select: { line: true } });
    return rows.map((r) => `${r.line}\n`).join('');
  }

  logger(uuid: string): ProcessLog {
    return new ProcessLog(this.prisma, uuid);
  }
}

/** A process's log: lines are written in small batches, readable while the process runs. */
export class ProcessLog {
  private pending: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly prisma: PrismaClient,
    private readonly uuid: string,
  ) {}

  line(text: string): void {
    for (const l of text.replace(/\r/g, '').split('\n')) this.pending.push(l);
    if (this.pending.length >= 200) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), 200).unref();
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = [];
    if (batch.length) {
      this.writing = this.writing
        .then(() => this.prisma.processLog.createMany({ data: batch.map((line) => ({ processUuid: this.uuid, line })) }))
        .then(() => undefined, () => undefined);
    }
    return this.writing;
  }
}
