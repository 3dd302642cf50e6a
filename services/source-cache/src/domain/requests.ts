import { randomUUID } from 'node:crypto';
import { badRequest, forbidden, notFound, unauthorized, type EventOutbox, type Identity, type SqlExecutor } from '@dockyard/kit';
import type { PrismaClient, Prisma } from '../generated/prisma/client.js';
import { STATES, type BundleFile, type ConfigFile, type Dependency, type EnvVar, type PackageResult, type StateName } from './types.js';

export type RequestRow = Prisma.RequestGetPayload<{ include: { states: true } }>;

/** Cachito's timestamps: naive UTC with microseconds. */
export const cachitoTime = (d: Date) => `${d.toISOString().slice(0, 23)}000`;

/** What a request reads as in the API, built from a row. */
export class RequestViews {
  constructor(private readonly publicUrl: string) {}

  url(path: string): string {
    return `${this.publicUrl.replace(/\/$/, '')}${path}`;
  }

  private base(row: RequestRow) {
    const env = row.environmentVariables as unknown as Record<string, EnvVar>;
    return {
      id: row.id,
      repo: row.repo,
      ref: row.ref,
      state: row.state,
      state_reason: row.stateReason,
      updated: cachitoTime(row.updatedAt),
      user: row.ownerLogin ?? undefined,
      flags: row.flags,
      pkg_managers: row.pkgManagers,
      environment_variables: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.value])),
    };
  }

  /** The list view: dependencies and packages as counts. */
  short(row: RequestRow) {
    const packages = row.packages as unknown as PackageResult[];
    return { ...this.base(row), packages: packages.length, dependencies: uniqueDependencies(packages).length };
  }

  /** The verbose view of GET /requests/{id}. */
  verbose(row: RequestRow) {
    const packages = row.packages as unknown as PackageResult[];
    const strip = (d: Dependency) => ({ name: d.name, type: d.type, version: d.version, replaces: d.replaces ?? null });
    return {
      ...this.base(row),
      submitted_by: row.submittedBy,
      packages: packages.map((p) => ({ name: p.name, type: p.type, version: p.version, dependencies: p.dependencies.map(strip) })),
      dependencies: uniqueDependencies(packages).map(strip),
      state_history: [...row.states]
        .sort((a, b) => b.id - a.id)
        .map((s) => ({ state: s.state, state_reason: s.stateReason, updated: cachitoTime(s.updated) })),
      configuration_files: this.url(`/api/v1/requests/${row.id}/configuration-files`),
      environment_variables_info: this.url(`/api/v1/requests/${row.id}/environment-variables`),
      logs: { url: this.url(`/api/v1/requests/${row.id}/logs`) },
    };
  }
}

/** Every dependency of a request once (the same one may serve several packages). */
export function uniqueDependencies(packages: PackageResult[]): Dependency[] {
  const seen = new Map<string, Dependency>();
  for (const p of packages) for (const d of p.dependencies) seen.set(`${d.type}\0${d.name}\0${d.version}\0${d.replaces?.name ?? ''}`, d);
  return [...seen.values()].sort((a, b) => a.type.localeCompare(b.type) || a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
}

export interface NewRequest {
  repo: string;
  ref: string;
  pkgManagers: string[];
  flags: string[];
  packagesSpec: Record<string, { path: string }[]>;
  dependencyReplacements: unknown[];
  ownerId: string | null;
  ownerLogin: string;
  submittedBy: string | null;
}

export interface ListQuery {
  page: number;
  per_page: number;
  state?: string;
  repo?: string;
  ref?: string;
  pkg_manager?: string[];
}

const KNOWN_PKG_MANAGERS = ['gomod', 'npm', 'pip', 'yarn', 'git-submodule'];

/** Who may see every request: admins and Cachito workers. */
export const seesAll = (identity: Identity) => identity.admin || identity.roles.includes('worker');

/** Requests in PostgreSQL: creation, reads with object-level visibility, state transitions. */
export class Requests {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly outbox: EventOutbox,
  ) {}

  /** Stores a state event in the transaction that stores the state; published after the commit (outbox.flush). */
  private async announce(tx: SqlExecutor, row: RequestRow, previous: string | null, actor: string | null): Promise<void> {
    await this.outbox.add(tx, 'events.source-cache.request.state', {
      id: randomUUID(),
      occurredAt: new Date().toISOString(),
      actor,
      resource: `cachito-request:${row.id}`,
      owner: row.ownerLogin,
      requestId: row.id,
      state: row.state,
      previousState: previous,
      stateReason: row.stateReason,
      repo: row.repo,
      ref: row.ref,
    });
  }

  private visibility(identity: Identity): Prisma.RequestWhereInput {
    if (seesAll(identity)) return {};
    if (!identity.login) return { id: -1 };
    return { ownerLogin: identity.login };
  }

  async create(input: NewRequest): Promise<RequestRow> {
    const row = await this.prisma.$transaction(async (tx) => {
      const row = await tx.request.create({
        data: {
          repo: input.repo,
          ref: input.ref,
          state: 'in_progress',
          stateReason: 'The request was initiated',
          pkgManagers: input.pkgManagers,
          flags: input.flags,
          packagesSpec: input.packagesSpec as Prisma.InputJsonValue,
          dependencyReplacements: input.dependencyReplacements as Prisma.InputJsonValue,
          ownerId: input.ownerId,
          ownerLogin: input.ownerLogin,
          submittedBy: input.submittedBy,
          states: { create: { state: 'in_progress', stateReason: 'The request was initiated' } },
        },
        include: { states: true },
      });
      await this.announce(tx, row, null, input.submittedBy ?? input.ownerLogin);
      return row;
    });
    await this.outbox.flush();
    return row;
  }

  /** A request the caller may read; 404 otherwise (an invisible request does not exist for them). */
  async get(identity: Identity, id: number): Promise<RequestRow> {
    const row = await this.prisma.request.findFirst({ where: { id, ...this.visibility(identity) }, include: { states: true } });
    if (!row) throw notFound();
    return row;
  }

  /** For the worker: no visibility check. */
  async load(id: number): Promise<RequestRow | null> {
    return this.prisma.request.findUnique({ where: { id }, include: { states: true } });
  }

  async latest(identity: Identity, repo: string, ref: string): Promise<RequestRow> {
    const row = await this.prisma.request.findFirst({ where: { repo, ref, ...this.visibility(identity) }, orderBy: { id: 'desc' }, include: { states: true } });
    if (!row) throw notFound();
    return row;
  }

  async list(identity: Identity, q: ListQuery): Promise<{ rows: RequestRow[]; total: number }> {
    if (q.state !== undefined && !(STATES as readonly string[]).includes(q.state)) {
      throw badRequest(`${q.state} is not a valid request state. Valid states are: ${STATES.join(', ')}`);
    }
    const unknown = (q.pkg_manager ?? []).filter((pm) => !KNOWN_PKG_MANAGERS.includes(pm));
    if (unknown.length) throw badRequest(`The following package managers are invalid: ${unknown.join(', ')}`);
    const where: Prisma.RequestWhereInput = { ...this.visibility(identity) };
    if (q.state) where.state = q.state;
    if (q.repo) where.repo = q.repo;
    if (q.ref) where.ref = q.ref;
    if (q.pkg_manager?.length) where.pkgManagers = { hasEvery: q.pkg_manager };
    const [rows, total] = await Promise.all([
      this.prisma.request.findMany({ where, orderBy: { id: 'desc' }, skip: (q.page - 1) * q.per_page, take: q.per_page, include: { states: true } }),
      this.prisma.request.count({ where }),
    ]);
    return { rows, total };
  }

  /**
   * Moves a request to a state, keeping the transition in its history and publishing it, but only
   * when `allowed(current state, current reason)` holds. The move is conditional on the state it was
   * decided from (UPDATE ... WHERE state = <seen> AND state_reason = <seen>, with the history row in
   * the same transaction), so two workers racing on one request, or a redelivered work item, move it
   * once: the loser changes nothing, publishes nothing and gets null. The state's event commits with it.
   */
  async transition(
    id: number,
    state: StateName,
    reason: string,
    actor: string | null,
    data: Prisma.RequestUpdateManyMutationInput = {},
    allowed: (current: string, currentReason: string) => boolean = () => true,
  ): Promise<RequestRow | null> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const before = await this.prisma.request.findUnique({ where: { id }, select: { state: true, stateReason: true } });
      if (!before) throw notFound();
      if (!allowed(before.state, before.stateReason)) return null;
      const row = await this.prisma.$transaction(async (tx) => {
        const { count } = await tx.request.updateMany({
          where: { id, state: before.state, stateReason: before.stateReason },
          data: { ...data, state, stateReason: reason, updatedAt: new Date() },
        });
        if (count !== 1) return null;
        await tx.requestState.create({ data: { requestId: id, state, stateReason: reason } });
        const row = await tx.request.findUniqueOrThrow({ where: { id }, include: { states: true } });
        await this.announce(tx, row, before.state, actor);
        return row;
      });
      if (row) {
        await this.outbox.flush();
        return row;
      }
      // Another writer moved it between the read and the update: decide again from what it is now.
    }
    throw new Error(`request ${id} kept changing state; the transition to ${state} was not made`);
  }

  /** Cachito's worker PATCH: state, reason, environment variables, a package with its dependencies. */
  async patch(identity: Identity, id: number, body: PatchBody): Promise<RequestRow> {
    requireWorker(identity);
    const row = await this.get(identity, id);
    if (!Object.keys(body).length) throw badRequest('At least one key must be specified to update the request');
    if (body.state !== undefined && !(STATES as readonly string[]).includes(body.state)) {
      throw badRequest(`The state "${body.state}" is invalid. It must be one of: ${STATES.join(', ')}.`);
    }
    if ((body.state === undefined) !== (body.state_reason === undefined)) throw badRequest('The "state_reason" key is required when "state" is supplied');
    const data: Prisma.RequestUpdateManyMutationInput = {};
    if (body.environment_variables) {
      const env = { ...(row.environmentVariables as unknown as Record<string, EnvVar>) };
      for (const [k, v] of Object.entries(body.environment_variables)) {
        if (typeof v !== 'string') throw badRequest(`The value of environment variable "${k}" must be a string`);
        env[k] = { value: v, kind: 'literal' };
      }
      data.environmentVariables = env as unknown as Prisma.InputJsonValue;
    }
    if (body.package || body.dependencies) {
      const packages = [...(row.packages as unknown as PackageResult[])];
      if (body.package) packages.push({ ...body.package, path: '.', dependencies: (body.dependencies ?? []).map((d) => ({ ...d, replaces: d.replaces ?? null })) });
      else if (packages.length) packages[packages.length - 1].dependencies.push(...(body.dependencies ?? []).map((d) => ({ ...d, replaces: d.replaces ?? null })));
      else throw badRequest('The "package" key is required when "dependencies" is supplied to a request with no package');
      data.packages = packages as unknown as Prisma.InputJsonValue;
    }
    if (body.state) {
      // Like Cachito: a repeat of the current state and reason (a task run twice) adds no state.
      const moved = await this.transition(id, body.state as StateName, body.state_reason!, identity.login, data, (s, r) => !(s === body.state && r === body.state_reason));
      if (moved) return moved;
    }
    return this.prisma.request.update({ where: { id }, data: { ...data, updatedAt: new Date() }, include: { states: true } });
  }

  async addConfigurationFiles(identity: Identity, id: number, files: ConfigFile[]): Promise<void> {
    requireWorker(identity);
    const row = await this.get(identity, id);
    const existing = new Map((row.configurationFiles as unknown as ConfigFile[]).map((f) => [f.path, f]));
    for (const f of files) {
      if (f.type !== 'base64') throw badRequest(`The configuration file type "${f.type}" is invalid; only base64 is supported`);
      if (!isSafeRelativePath(f.path)) throw badRequest(`The configuration file path "${f.path}" must be a relative path without ".."`);
      existing.set(f.path, f);
    }
    await this.prisma.request.update({ where: { id }, data: { configurationFiles: [...existing.values()] as unknown as Prisma.InputJsonValue } });
  }

  /** The worker's result; null (nothing stored or published) when the request is no longer in progress. */
  async complete(
    id: number,
    result: { packages: PackageResult[]; env: Record<string, EnvVar>; configFiles: ConfigFile[]; files: BundleFile[]; bundle: { key: string; sha256: string; size: number }; logs: string },
  ): Promise<RequestRow | null> {
    return this.transition(
      id,
      'complete',
      'Completed successfully',
      null,
      {
        packages: result.packages as unknown as Prisma.InputJsonValue,
        environmentVariables: result.env as unknown as Prisma.InputJsonValue,
        configurationFiles: result.configFiles as unknown as Prisma.InputJsonValue,
        files: result.files as unknown as Prisma.InputJsonValue,
        bundleKey: result.bundle.key,
        bundleSha256: result.bundle.sha256,
        bundleSize: BigInt(result.bundle.size),
        logs: result.logs,
      },
      inProgress,
    );
  }

  /** The worker's failure; null (nothing stored or published) when the request is no longer in progress. */
  async fail(id: number, reason: string, logs: string): Promise<RequestRow | null> {
    return this.transition(id, 'failed', reason, null, { logs }, inProgress);
  }

  /** Requests last updated before `before` that are not stale yet (their bundles are deleted by the caller). */
  async staleCandidates(before: Date): Promise<RequestRow[]> {
    return this.prisma.request.findMany({ where: { state: { not: 'stale' }, updatedAt: { lt: before } }, include: { states: true } });
  }

  /** Null when it already is stale (another sweeper got there first). */
  async markStale(id: number): Promise<RequestRow | null> {
    return this.transition(id, 'stale', 'The request has expired', null, { logs: '', bundleKey: null }, (s) => s !== 'stale');
  }
}

const inProgress = (state: string) => state === 'in_progress';

export interface PatchBody {
  state?: string;
  state_reason?: string;
  environment_variables?: Record<string, unknown>;
  package?: { name: string; type: string; version: string };
  dependencies?: (Dependency & { replaces?: Dependency['replaces'] })[];
}

export function requireWorker(identity: Identity): void {
  if (!identity.id && !identity.login) throw unauthorized('Authentication required');
  if (!identity.roles.includes('worker')) throw forbidden('This API endpoint is restricted to Cachito workers');
}

/** A relative path inside the repository: no absolute paths, no `..` segments, no NUL. */
export function isSafeRelativePath(p: string): boolean {
  if (typeof p !== 'string' || !p || p.includes('\0') || p.startsWith('/') || p.includes('\\')) return false;
  return !p.split('/').some((s) => s === '..');
}
