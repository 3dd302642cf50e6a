import { randomUUID } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { HttpError, json, type EventOutbox, type SqlExecutor, type Subjects } from '@dockyard/kit';
import type { PrismaClient } from '../generated/prisma/client.js';
import type { Build } from '../generated/prisma/client.js';
import { TERMINAL, type BuildKind, type BuildSpec, type PlatformState, type Result } from './types.js';

/** Builds travel on `work.build.<platform token>` (e.g. `work.build.linux_amd64`, `work.build.any`). */
export const WORK_SUBJECT = 'work.build';
export const WORK_STREAM = 'BUILD_WORK';
/** The work subject token of a build that names no platform: any worker builds it for its own. */
export const ANY_PLATFORM = 'any';

const ARCH: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', armv7l: 'arm/v7' };

/** `linux/amd64`, `linux/arm/v7`...: the platform spelled as docker does. */
export function normalizePlatform(p: string): string {
  const [osName, arch, variant] = p.toLowerCase().split('/');
  const a = ARCH[arch] ?? arch;
  return [osName, a, variant].filter(Boolean).join('/');
}

/** A platform as one subject token (and consumer name part): `linux/arm/v7` -> `linux_arm_v7`. */
export const platformToken = (p: string): string => normalizePlatform(p).replace(/[^a-z0-9]+/g, '_');

/**
 * The work subject of a build: its platform's (the first one asked, when several are: that worker
 * builds those it can and reports the rest), or `any` when it names none.
 */
export function workSubjectOf(platforms: string[]): string {
  return `${WORK_SUBJECT}.${platforms.length ? platformToken(platforms[0]) : ANY_PLATFORM}`;
}

export interface NewBuild {
  kind: BuildKind;
  owner: string | null;
  spec: BuildSpec;
  nocache: boolean;
  push: boolean;
  ecr?: { namespace: string; name: string; version: string };
  /** A Kabuto image's name. */
  name?: string;
}

/** The permission key an event about a build carries (openapi/events.yaml). */
export function resourceOf(build: Pick<Build, 'kind' | 'id' | 'namespace' | 'name'>): string {
  if (build.kind === 'ecr') return `repository:${build.namespace}/${build.name}`;
  if (build.kind === 'kabuto') return `image-build:${build.id}`;
  return `build:${build.id}`;
}

export const platformsOf = (build: Pick<Build, 'platforms'>) => build.platforms as unknown as PlatformState[];
export const specOf = (build: Pick<Build, 'spec'>) => build.spec as unknown as BuildSpec;

/** A Kabuto image to store with its build's success. */
export interface NewImage {
  owner: string;
  name: string;
  dockerfile: string | null;
  reference: string;
}

/**
 * Stores builds, numbers ECR builds, queues them on JetStream and announces them as events. Events
 * go through the service's outbox: the `finished` one is stored in the transaction that ends the
 * build, so it is published even if this process dies or NATS is down right after the commit.
 */
export class Builds {
  constructor(
    readonly prisma: PrismaClient,
    private readonly nc: NatsConnection,
    readonly subjects: Subjects,
    private readonly outbox: EventOutbox,
  ) {}

  /** Announces a build event; with `tx`, it is stored in that transaction and published after its commit (the caller flushes). */
  async event(verb: 'queued' | 'started' | 'finished', build: Build, actor: string | null, extra: Record<string, unknown>, tx?: SqlExecutor): Promise<void> {
    const id = randomUUID();
    const payload = { id, occurredAt: new Date().toISOString(), actor, resource: resourceOf(build), owner: build.owner ?? null, buildId: build.id, kind: build.kind, number: build.number, ...extra };
    await this.outbox.add(tx ?? this.prisma, `events.build.build.${verb}`, payload);
    if (!tx) await this.outbox.flush();
  }

  /** Records a build (ECR builds get the next number of their version) and queues it. */
  async create(input: NewBuild): Promise<Build> {
    const platforms: PlatformState[] = input.spec.platforms.map((platform) => ({ platform, state: 'QUEUED', digest: null, error: null }));
    const base = {
      id: randomUUID(),
      kind: input.kind,
      state: 'QUEUED',
      owner: input.owner,
      spec: input.spec as object,
      nocache: input.nocache,
      push: input.push,
      platforms: platforms as object[],
      name: input.name ?? null,
    };
    let build: Build | null = null;
    for (let attempt = 0; !build; attempt++) {
      try {
        if (input.ecr) {
          const { namespace, name, version } = input.ecr;
          const last = await this.prisma.build.aggregate({ _max: { number: true }, where: { namespace, name, version } });
          build = await this.prisma.build.create({ data: { ...base, namespace, name, version, number: (last._max.number ?? 0) + 1 } });
        } else {
          build = await this.prisma.build.create({ data: base });
        }
      } catch (err) {
        // Two builds of one version queued at once: the unique number index decides; take the next.
        if ((err as { code?: string }).code !== 'P2002' || attempt > 5) throw err;
      }
    }
    try {
      await jetstream(this.nc).publish(this.subjects.of(workSubjectOf(input.spec.platforms)), json.encode({ buildId: build.id }), { msgID: build.id });
    } catch (err) {
      await this.prisma.build.update({
        where: { id: build.id },
        data: { state: 'FAILURE', errorSource: 'service', error: 'The build could not be queued', finishedAt: new Date() },
      });
      throw new HttpError(503, `The build queue is unavailable: ${(err as Error).message}`);
    }
    await this.event('queued', build, input.owner, { platforms: input.spec.platforms });
    return build;
  }

  /**
   * Ends a build. Conditional on it not having ended already (an abort and a worker may race), so
   * exactly one finish is stored and announced: the new state, a Kabuto build's image and the
   * `finished` event commit together. Returns the stored build, or null if it had ended.
   */
  async finish(
    id: string,
    from: string[],
    outcome: { result: Result; errorSource?: 'build' | 'service' | null; error?: string | null; image?: string | null; digest?: string | null; platforms?: PlatformState[] },
    newImage?: NewImage,
  ): Promise<Build | null> {
    const now = new Date();
    const build = await this.prisma.$transaction(async (tx) => {
      const { count } = await tx.build.updateMany({
        where: { id, state: { in: from } },
        data: {
          state: outcome.result,
          errorSource: outcome.result === 'FAILURE' ? (outcome.errorSource ?? 'service') : null,
          error: outcome.error ?? null,
          image: outcome.image ?? null,
          digest: outcome.digest ?? null,
          finishedAt: now,
          ...(outcome.platforms ? { platforms: outcome.platforms as object[] } : {}),
        },
      });
      if (!count) return null;
      // A build retried after its worker died mid-way may have stored its image already.
      const image = newImage && outcome.result === 'SUCCESS' ? await tx.image.upsert({ where: { buildId: id }, create: { ...newImage, buildId: id }, update: newImage }) : null;
      const ended = await tx.build.findUniqueOrThrow({ where: { id } });
      // Platforms still open end with the build (aborted, or the service failed before them).
      const platforms = outcome.platforms ?? platformsOf(ended).map((p) => (TERMINAL.has(p.state) ? p : { ...p, state: outcome.result, error: p.error ?? outcome.error ?? null }));
      const stored = await tx.build.update({ where: { id }, data: { platforms: platforms as object[], imageId: image?.id ?? null } });
      const started = stored.startedAt ?? stored.createdAt;
      await this.event(
        'finished',
        stored,
        null,
        {
          result: stored.state,
          errorSource: stored.errorSource,
          error: stored.error,
          durationMs: Math.max(0, now.getTime() - started.getTime()),
          image: stored.image,
          digest: stored.digest,
          imageId: stored.imageId,
          platforms: platformsOf(stored).map((p) => ({ platform: p.platform, result: TERMINAL.has(p.state) ? p.state : outcome.result, digest: p.digest, error: p.error })),
        },
        tx,
      );
      return stored;
    });
    if (!build) return null;
    await this.outbox.flush();
    this.nc.publish(this.subjects.of(`logs.build.${id}`), json.encode({ end: true, result: build.state }));
    return build;
  }

  /** Asks for a build to stop: a queued one ends ABORTED now; a running one is stopped by its worker. */
  async abort(build: Build): Promise<void> {
    if (build.state === 'QUEUED') {
      await this.prisma.build.update({ where: { id: build.id }, data: { abortRequested: true } });
      if (await this.finish(build.id, ['QUEUED'], { result: 'ABORTED', error: 'Aborted while queued' })) return;
    }
    await this.prisma.build.update({ where: { id: build.id }, data: { abortRequested: true } });
    this.nc.publish(this.subjects.of('build.abort'), json.encode({ buildId: build.id }));
  }

  /** Waits (up to `ms`) for a build to end; returns it as it is then. */
  async waitEnded(id: string, ms: number): Promise<Build> {
    const deadline = Date.now() + ms;
    for (;;) {
      const build = await this.prisma.build.findUniqueOrThrow({ where: { id } });
      if (TERMINAL.has(build.state) || Date.now() > deadline) return build;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The stored output of a build, in order. */
  async logLines(id: string, afterSeq = 0n): Promise<{ seq: bigint; platform: string | null; line: string }[]> {
    return this.prisma.buildLog.findMany({ where: { buildId: id, seq: { gt: afterSeq } }, orderBy: { seq: 'asc' }, select: { seq: true, platform: true, line: true } });
  }
}
