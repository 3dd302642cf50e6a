import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { LRUCache } from 'lru-cache';
import {
  ANONYMOUS,
  badRequest,
  conflict,
  notAuthorized,
  notFound,
  unauthorized,
  type BlobInfo,
  type BlobStore,
  type EventPublisher,
  type Identity,
  type PermissionsClient,
} from '@dockyard/kit';
import type { PermissionLevel, PermissionsVisibleReply, RegistryApp, ResourceRef } from '@dockyard/contracts';
import type { PrismaClient, Namespace, Repository } from '../generated/prisma/client.js';
import { checkDocument, NAME_RULE, parseDocument, validName, VERSION, type AppDocument } from './document.js';
import { renderApp, withFrozen } from './render.js';
import { SourceFetcher, type CheckedOut } from './source.js';

const nsRef = (name: string): ResourceRef => ({ type: 'namespace', name });
const repoRef = (namespace: string, name: string): ResourceRef => ({ type: 'repository', name: `${namespace}/${name}` });
const appLabel = (ns: string, name: string, version: string) => `${ns}/${name}:${version}`;

export interface AppKey {
  namespace: string;
  name: string;
  version: string;
}

export interface ListQuery {
  limit?: number;
  continue?: string;
  public?: string;
  shared?: string;
  owner?: string;
}

export interface AppPage {
  /** `{"pagination": ..., "data": [...]}` as JSON text (bodies are stored rendered). */
  json: string;
}

const flag = (v: string | undefined) => v === 'true' || v === '1';

/** Which namespaces/repositories a `visible` answer covers, as a predicate and a Prisma filter. */
function coverage(v: PermissionsVisibleReply) {
  const namespaces = new Set(v.namespaces);
  const repositories = new Set(v.repositories);
  return {
    all: v.all,
    covers: (ns: string, name: string) => v.all || namespaces.has(ns) || repositories.has(`${ns}/${name}`),
    where: v.all ? {} : { OR: [{ namespace: { in: v.namespaces } }, { repository: { in: v.repositories } }] },
  };
}

/** The continue token: the last listed row's position, opaque to clients. */
const encodeToken = (seq: bigint) => Buffer.from(`s:${seq}`).toString('base64url');
function decodeToken(token: string): bigint {
  const m = /^s:(\d{1,19})$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m) throw badRequest('continue: not a token this service issued');
  return BigInt(m[1]);
}

export interface RegistryDeps {
  prisma: PrismaClient;
  permissions: PermissionsClient;
  blobs: BlobStore;
  events: EventPublisher;
  fetcher: SourceFetcher;
  log: FastifyBaseLogger;
  /** Benchmarks only: store submits without cloning. */
  skipClone?: boolean;
  /** How long a rendered app is served from memory (0: never); changes anywhere drop it at once. */
  appCacheMs?: number;
}

const cacheKey = (k: AppKey) => `${k.namespace}/${k.name}/${k.version}`;

/** ECR's registry: apps, namespaces and repositories, every rule and permission check. */
export class Registry {
  private readonly prisma: PrismaClient;
  private readonly permissions: PermissionsClient;

  /**
   * Rendered apps by namespace/name/version: the GET hot path is then a cached permission decision
   * and a map lookup. Every change drops its entry here at once and, through the
   * events.registry.app.* event, in every other replica ({@link forgetCached}); the TTL bounds what
   * a lost event could leave behind.
   */
  private readonly bodies: LRUCache<string, string> | null;
  private generation = 0;

  constructor(private readonly deps: RegistryDeps) {
    this.prisma = deps.prisma;
    this.permissions = deps.permissions;
    this.bodies = deps.appCacheMs ? new LRUCache({ max: 20_000, ttl: deps.appCacheMs }) : null;
  }

  /** Drops a cached app (it changed here or in another replica). */
  forgetCached(key: AppKey): void {
    this.generation++;
    this.bodies?.delete(cacheKey(key));
  }

  // ------------------------------------------------------------------------ events

  private async emit(name: string, actor: string | null, resource: string, payload: Record<string, unknown>): Promise<void> {
    const id = randomUUID();
    try {
      await this.deps.events.publish(`events.registry.${name}`, { id, occurredAt: new Date().toISOString(), actor, resource, ...payload }, id);
    } catch (err) {
      // The change is stored; a lost event must not turn it into an error for the caller.
      this.deps.log.error({ err, event: name }, 'event not published');
    }
  }

  // ------------------------------------------------------------------------ apps: read

  /** The stored app (JSON text) after a READ check; 404 only for callers who may read the repository. */
  async appBody(identity: Identity, key: AppKey): Promise<string> {
    await this.permissions.require(identity, 'READ', repoRef(key.namespace, key.name));
    const cached = this.bodies?.get(cacheKey(key));
    if (cached !== undefined) return cached;
    const generation = this.generation;
    const row = await this.prisma.app.findUnique({
      where: { namespace_name_version: { namespace: key.namespace, name: key.name, version: key.version } },
      select: { body: true },
    });
    if (!row) throw notFound(`App ${appLabel(key.namespace, key.name, key.version)} not found`);
    // A row read across a change may be stale: serve it once, do not keep it.
    if (generation === this.generation) this.bodies?.set(cacheKey(key), row.body);
    return row.body;
  }

  /** For the build service (`registry.app.get`): the app with its recorded commit and archive. */
  async appForBuild(key: AppKey): Promise<RegistryApp | null> {
    if (![key.namespace, key.name].every((n) => typeof n === 'string' && validName(n)) || typeof key.version !== 'string') return null;
    const row = await this.prisma.app.findUnique({ where: { namespace_name_version: { namespace: key.namespace, name: key.name, version: key.version } } });
    if (!row) return null;
    return { ...(JSON.parse(row.body) as object), commit: row.commit ?? '', sourceArchive: row.sourceArchive } as RegistryApp;
  }

  /** The version list of one repository (ECR's bare array). */
  async versions(identity: Identity, namespace: string, name: string): Promise<{ id: string; name: string; namespace: string; version: string }[]> {
    await this.permissions.require(identity, 'READ', repoRef(namespace, name));
    const repo = await this.prisma.repository.findUnique({ where: { namespace_name: { namespace, name } }, select: { name: true } });
    if (!repo) throw notFound(`Repository ${namespace}/${name} not found`);
    return this.prisma.app.findMany({ where: { namespace, name }, orderBy: { seq: 'asc' }, select: { id: true, name: true, namespace: true, version: true } });
  }

  /** An imported ecr-meta file (after a READ check). */
  async metaFile(identity: Identity, key: AppKey, file: string): Promise<BlobInfo> {
    await this.permissions.require(identity, 'READ', repoRef(key.namespace, key.name));
    const row = await this.prisma.app.findUnique({ where: { namespace_name_version: key }, select: { metaFiles: true } });
    if (!row) throw notFound(`App ${appLabel(key.namespace, key.name, key.version)} not found`);
    const files = row.metaFiles as unknown as Record<string, BlobInfo>;
    if (!Object.hasOwn(files, file)) throw notFound(`Meta file ${file} not found for ${appLabel(key.namespace, key.name, key.version)}`);
    return files[file];
  }

  /**
   * A page of apps the caller may read: `namespace` narrows to one namespace (401 when the caller
   * may read nothing in it, 404 when it does not exist and the caller could know).
   */
  async listApps(identity: Identity, query: ListQuery, namespace: string | null, selfUrl: string): Promise<AppPage> {
    const limit = query.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw badRequest('limit: must be between 1 and 1000');
    const after = query.continue ? decodeToken(query.continue) : null;
    const visible = coverage(await this.permissions.visible(identity, 'READ'));
    const and: object[] = [visible.where];
    if (namespace !== null) {
      const exists = await this.prisma.namespace.findUnique({ where: { id: namespace }, select: { id: true } });
      const mayKnow = await this.permissions.allowed(identity, 'READ', nsRef(namespace));
      if (!exists) {
        if (mayKnow) throw notFound(`Namespace ${namespace} not found`);
        throw notAuthorized(identity, 'READ', nsRef(namespace));
      }
      if (!mayKnow) {
        // No grant on the namespace: it is visible only through grants on some of its repositories.
        const some = await this.prisma.repository.findMany({ where: { namespace }, select: { name: true } });
        if (!some.some((r) => visible.covers(namespace, r.name))) throw notAuthorized(identity, 'READ', nsRef(namespace));
      }
      and.push({ namespace });
    }
    if (flag(query.public) || flag(query.shared)) {
      const pub = coverage(await this.permissions.visible(ANONYMOUS, 'READ'));
      if (flag(query.public)) and.push(pub.where);
      // Shared: readable through a grant that is not the public one, and owned by someone else.
      if (flag(query.shared)) and.push(identity.login ? { owner: { not: identity.login }, NOT: pub.where } : { id: '' });
    }
    if (query.owner) and.push({ owner: query.owner });
    if (after !== null) and.push({ seq: { gt: after } });
    const rows = await this.prisma.app.findMany({ where: { AND: and }, orderBy: { seq: 'asc' }, take: limit + 1, select: { seq: true, body: true } });
    const more = rows.length > limit;
    const page = more ? rows.slice(0, limit) : rows;
    let token: string | null = null;
    let next: string | null = null;
    if (more) {
      token = encodeToken(page[page.length - 1].seq);
      const url = new URL(selfUrl, 'http://registry');
      url.searchParams.set('continue', token);
      url.searchParams.set('limit', String(limit));
      next = url.pathname + url.search;
    }
    return { json: `{"pagination":${JSON.stringify({ limit, continue: token, next })},"data":[${page.map((r) => r.body).join(',')}]}` };
  }

  // ------------------------------------------------------------------------ apps: submit

  /**
   * Submits an app version: checks the document, the permissions (creating the namespace, owned by
   * the submitter, and the repository, which needs WRITE on the namespace), clones the source,
   * stores its archive and ecr-meta files, and stores the app. Returns the stored app (JSON text).
   */
  async submit(identity: Identity, raw: string | Buffer | undefined, path: Partial<AppKey> | null, force: boolean): Promise<string> {
    const doc = checkDocument(parseDocument(raw));
    const pick = (field: 'namespace' | 'name' | 'version') => {
      const fromPath = path?.[field];
      const fromDoc = doc[field];
      if (fromPath !== undefined && fromDoc !== undefined && fromPath !== fromDoc) {
        throw badRequest(`${field}: the document says "${fromDoc}" but the path says "${fromPath}"`);
      }
      return fromPath ?? fromDoc;
    };
    const namespace = pick('namespace');
    const name = pick('name');
    let version = pick('version');
    if (!namespace) throw badRequest('namespace: required');
    if (!name) throw badRequest('name: required');
    if (version !== undefined && !VERSION.test(version)) throw badRequest('version: invalid');
    if (!identity.login) throw notAuthorized(identity, 'WRITE', nsRef(namespace));
    const login = identity.login;
    // DOCKYARD_GIT_ALLOW first: a refused URL creates nothing.
    if (!this.deps.skipClone) await this.deps.fetcher.assertAllowed(doc.source.url);

    await this.authorizeSubmit(identity, namespace, name);
    if (version !== undefined) await this.assertWritable({ namespace, name, version }, force);

    let checkout: CheckedOut | null = null;
    const stored: string[] = [];
    try {
      let commit: string | null = null;
      let sourceArchive: string | null = null;
      let metaFiles: Record<string, BlobInfo> = {};
      const prefix = `apps/${randomUUID()}`;
      if (!this.deps.skipClone) {
        checkout = await this.deps.fetcher.checkout(doc.source);
        commit = checkout.commit;
        if (version === undefined) {
          version = SourceFetcher.derivedVersion(checkout);
          await this.assertWritable({ namespace, name, version }, force);
        }
        sourceArchive = (await this.deps.fetcher.storeArchive(this.deps.blobs, checkout, `${prefix}/source.tar.gz`)).key;
        stored.push(sourceArchive);
        metaFiles = await this.deps.fetcher.importMeta(this.deps.blobs, checkout, doc.source.directory, `${prefix}/meta`);
        stored.push(...Object.values(metaFiles).map((b) => b.key));
      } else if (version === undefined) {
        throw badRequest('version: required when cloning is disabled');
      }
      const result = await this.storeApp({ namespace, name, version }, doc, login, force, { commit, sourceArchive, metaFiles });
      this.forgetCached({ namespace, name, version });
      stored.length = 0; // kept: they belong to the stored app now
      for (const key of result.replacedBlobs) await this.deps.blobs.delete(key).catch(() => undefined);
      await this.emit('app.submitted', login, `repository:${namespace}/${name}`, {
        appId: result.id,
        namespace,
        name,
        version,
        owner: login,
        commit,
        forced: result.forced,
      });
      return result.body;
    } finally {
      for (const key of stored) await this.deps.blobs.delete(key).catch(() => undefined);
      await checkout?.cleanup();
    }
  }

  /**
   * May `identity` submit into namespace/name? Creates what is missing: the namespace (the
   * submitter owns it) and the repository (needs WRITE on the namespace; the submitter owns it).
   * Creation is race-free (insert or nothing); a resource created concurrently by someone else is
   * checked like an existing one.
   */
  private async authorizeSubmit(identity: Identity, namespace: string, name: string): Promise<void> {
    const login = identity.login as string;
    // The usual case first: an existing repository (whose namespace then exists too) is one lookup.
    const repo = await this.prisma.repository.findUnique({ where: { namespace_name: { namespace, name } }, select: { name: true } });
    if (repo) return this.permissions.require(identity, 'WRITE', repoRef(namespace, name));
    const ns = await this.prisma.namespace.findUnique({ where: { id: namespace }, select: { id: true } });
    if (!ns) await this.createNamespaceRow(namespace, login);
    await this.permissions.require(identity, 'WRITE', nsRef(namespace));
    const { count } = await this.prisma.repository.createMany({ data: [{ namespace, name, owner: login }], skipDuplicates: true });
    if (!count) return this.permissions.require(identity, 'WRITE', repoRef(namespace, name));
    await this.permissions.own(repoRef(namespace, name), login);
    await this.emit('repository.created', login, `repository:${namespace}/${name}`, { namespace, name, owner: login });
  }

  /** Inserts a namespace unless it exists; the creator gets ownership. True when created. */
  private async createNamespaceRow(id: string, login: string): Promise<boolean> {
    const { count } = await this.prisma.namespace.createMany({ data: [{ id, owner: login }], skipDuplicates: true });
    if (!count) return false;
    await this.permissions.own(nsRef(id), login);
    await this.emit('namespace.created', login, `namespace:${id}`, { namespace: id, owner: login });
    return true;
  }

  /** Refuses (409) to overwrite a frozen version, or an existing one without ?force=true. */
  private async assertWritable(key: AppKey, force: boolean): Promise<void> {
    const existing = await this.prisma.app.findUnique({ where: { namespace_name_version: key }, select: { frozen: true } });
    if (existing?.frozen) throw conflict(`App ${appLabel(key.namespace, key.name, key.version)} is frozen and cannot be overwritten`);
    if (existing && !force) throw conflict(`App ${appLabel(key.namespace, key.name, key.version)} already exists (use ?force=true to overwrite)`);
  }

  private async storeApp(
    key: AppKey,
    doc: AppDocument,
    owner: string,
    force: boolean,
    source: { commit: string | null; sourceArchive: string | null; metaFiles: Record<string, BlobInfo> },
  ): Promise<{ id: string; body: string; forced: boolean; replacedBlobs: string[] }> {
    const now = new Date();
    const { namespace, name, version } = key;
    const fields = { owner, frozen: doc.frozen, commit: source.commit, sourceArchive: source.sourceArchive, metaFiles: source.metaFiles as object };
    // A new version (the usual case) is one INSERT; only a clash reads the existing row.
    const id = randomUUID();
    const fresh = renderApp(doc, { id, namespace, name, version, owner, frozen: doc.frozen, commit: source.commit, createdAt: now, updatedAt: now });
    try {
      await this.prisma.app.createMany({ data: [{ id, namespace, name, version, repository: `${namespace}/${name}`, ...fields, body: fresh, createdAt: now, updatedAt: now }] });
      return { id, body: fresh, forced: false, replacedBlobs: [] };
    } catch (err) {
      if ((err as { code?: string }).code !== 'P2002') throw err;
    }
    const existing = await this.prisma.app.findUnique({ where: { namespace_name_version: key } });
    if (!existing) return this.storeApp(key, doc, owner, force, source); // deleted in between
    if (existing.frozen) throw conflict(`App ${appLabel(namespace, name, version)} is frozen and cannot be overwritten`);
    if (!force) throw conflict(`App ${appLabel(namespace, name, version)} already exists (use ?force=true to overwrite)`);
    const body = renderApp(doc, { id: existing.id, namespace, name, version, owner, frozen: doc.frozen, commit: source.commit, createdAt: existing.createdAt, updatedAt: now });
    // Only while still unfrozen: a freeze that landed in between wins.
    const { count } = await this.prisma.app.updateMany({ where: { id: existing.id, frozen: false }, data: { ...fields, body, updatedAt: now } });
    if (!count) throw conflict(`App ${appLabel(namespace, name, version)} is frozen and cannot be overwritten`);
    const replaced = [existing.sourceArchive, ...Object.values(existing.metaFiles as unknown as Record<string, BlobInfo>).map((b) => b.key)].filter((k): k is string => !!k);
    return { id: existing.id, body, forced: true, replacedBlobs: replaced };
  }

  // ------------------------------------------------------------------------ apps: freeze, delete

  /** `?frozen=true` needs WRITE; unfreezing is for admins only. Returns the stored app. */
  async freeze(identity: Identity, key: AppKey, frozen: boolean): Promise<string> {
    await this.permissions.require(identity, 'WRITE', repoRef(key.namespace, key.name));
    const row = await this.prisma.app.findUnique({ where: { namespace_name_version: key } });
    if (!row) throw notFound(`App ${appLabel(key.namespace, key.name, key.version)} not found`);
    if (!frozen && row.frozen && !identity.admin) {
      throw unauthorized(`Not authorized. (App ${appLabel(key.namespace, key.name, key.version)} is frozen, only an admin can unfreeze it)`);
    }
    if (row.frozen === frozen) return row.body;
    const now = new Date();
    const body = withFrozen(row.body, frozen, now);
    await this.prisma.app.update({ where: { id: row.id }, data: { frozen, body, updatedAt: now } });
    this.forgetCached(key);
    await this.emit('app.frozen', identity.login, `repository:${key.namespace}/${key.name}`, { appId: row.id, ...key, frozen });
    return body;
  }

  /** Needs FULL_CONTROL; a frozen app only by an admin. */
  async deleteApp(identity: Identity, key: AppKey): Promise<{ deleted: number }> {
    await this.permissions.require(identity, 'FULL_CONTROL', repoRef(key.namespace, key.name));
    const row = await this.prisma.app.findUnique({ where: { namespace_name_version: key } });
    if (!row) throw notFound(`App ${appLabel(key.namespace, key.name, key.version)} not found`);
    if (row.frozen && !identity.admin) {
      throw unauthorized(`Not authorized. (App ${appLabel(key.namespace, key.name, key.version)} is frozen, only an admin can delete it)`);
    }
    const { count } = await this.prisma.app.deleteMany({ where: { id: row.id } });
    this.forgetCached(key);
    if (!count) throw notFound(`App ${appLabel(key.namespace, key.name, key.version)} not found`);
    for (const blob of [row.sourceArchive, ...Object.values(row.metaFiles as unknown as Record<string, BlobInfo>).map((b) => b.key)]) {
      if (blob) await this.deps.blobs.delete(blob).catch(() => undefined);
    }
    await this.emit('app.deleted', identity.login, `repository:${key.namespace}/${key.name}`, { appId: row.id, ...key });
    return { deleted: 1 };
  }

  // ------------------------------------------------------------------------ namespaces

  async listNamespaces(identity: Identity): Promise<{ id: string; owner_id: string }[]> {
    const visible = await this.permissions.visible(identity, 'READ');
    const rows = await this.prisma.namespace.findMany({ where: visible.all ? {} : { id: { in: visible.namespaces } }, orderBy: { id: 'asc' } });
    return rows.map(nsView);
  }

  /** PUT /namespaces: the caller owns the new namespace; repeating it for one's own is idempotent. */
  async createNamespace(identity: Identity, raw: unknown): Promise<{ id: string; owner_id: string }> {
    let body = raw;
    if (typeof raw === 'string' || Buffer.isBuffer(raw)) {
      try {
        body = JSON.parse(String(raw));
      } catch {
        throw badRequest('The body must be a JSON object {"id": "<namespace>"}');
      }
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('The body must be a JSON object {"id": "<namespace>"}');
    for (const key of Object.keys(body)) if (key !== 'id') throw badRequest(`Field ${key} not supported`);
    const id = (body as { id?: unknown }).id;
    if (id === undefined || id === null || id === '') throw badRequest('id: required');
    if (typeof id !== 'string' || !validName(id)) throw badRequest(NAME_RULE('id'));
    if (!identity.login) throw unauthorized(`Not authorized. (Anonymous user may not create namespace ${id})`);
    await this.createNamespaceRow(id, identity.login);
    const row = await this.prisma.namespace.findUniqueOrThrow({ where: { id } });
    if (row.owner !== identity.login) throw conflict(`Namespace ${id} already exists`);
    return nsView(row);
  }

  async getNamespace(identity: Identity, id: string) {
    await this.permissions.require(identity, 'READ', nsRef(id));
    const row = await this.prisma.namespace.findUnique({ where: { id }, include: { repositories: { orderBy: { name: 'asc' } } } });
    if (!row) throw notFound(`Namespace ${id} not found`);
    return { ...nsView(row), repositories: row.repositories.map(repoView) };
  }

  async deleteNamespace(identity: Identity, id: string): Promise<{ deleted: number }> {
    await this.permissions.require(identity, 'FULL_CONTROL', nsRef(id));
    const row = await this.prisma.namespace.findUnique({ where: { id }, include: { _count: { select: { repositories: true } } } });
    if (!row) throw notFound(`Namespace ${id} not found`);
    if (row._count.repositories) throw conflict(`Namespace ${id} is not empty`);
    try {
      await this.prisma.namespace.delete({ where: { id } });
    } catch (err) {
      // A repository created in between: the foreign key refuses the delete.
      if ((err as { code?: string }).code === 'P2003') throw conflict(`Namespace ${id} is not empty`);
      throw err;
    }
    await this.permissions.forget(nsRef(id));
    await this.emit('namespace.deleted', identity.login, `namespace:${id}`, { namespace: id });
    return { deleted: 1 };
  }

  // ------------------------------------------------------------------------ repositories

  /** The repositories of a namespace the caller may read; `public`/`shared` filters. */
  async listRepositories(identity: Identity, namespace: string, query: { public?: string; shared?: string }) {
    const exists = await this.prisma.namespace.findUnique({ where: { id: namespace }, select: { id: true } });
    const nsReadable = await this.permissions.allowed(identity, 'READ', nsRef(namespace));
    if (!exists) {
      if (nsReadable) throw notFound(`Namespace ${namespace} not found`);
      throw notAuthorized(identity, 'READ', nsRef(namespace));
    }
    let repos = await this.prisma.repository.findMany({ where: { namespace }, orderBy: { name: 'asc' } });
    if (!nsReadable) {
      const visible = coverage(await this.permissions.visible(identity, 'READ'));
      repos = repos.filter((r) => visible.covers(r.namespace, r.name));
      if (!repos.length) throw notAuthorized(identity, 'READ', nsRef(namespace));
    }
    if (flag(query.public) || flag(query.shared)) {
      const pub = coverage(await this.permissions.visible(ANONYMOUS, 'READ'));
      if (flag(query.public)) repos = repos.filter((r) => pub.covers(r.namespace, r.name));
      if (flag(query.shared)) repos = repos.filter((r) => identity.login && r.owner !== identity.login && !pub.covers(r.namespace, r.name));
    }
    return repos.map(repoView);
  }

  async getRepository(identity: Identity, namespace: string, name: string) {
    await this.permissions.require(identity, 'READ', repoRef(namespace, name));
    const row = await this.prisma.repository.findUnique({ where: { namespace_name: { namespace, name } } });
    if (!row) throw notFound(`Repository ${namespace}/${name} not found`);
    return repoView(row);
  }

  async deleteRepository(identity: Identity, namespace: string, name: string): Promise<{ deleted: number }> {
    await this.permissions.require(identity, 'FULL_CONTROL', repoRef(namespace, name));
    const row = await this.prisma.repository.findUnique({ where: { namespace_name: { namespace, name } }, include: { _count: { select: { apps: true } } } });
    if (!row) throw notFound(`Repository ${namespace}/${name} not found`);
    if (row._count.apps) throw conflict(`Repository ${namespace}/${name} still has versions`);
    try {
      await this.prisma.repository.delete({ where: { namespace_name: { namespace, name } } });
    } catch (err) {
      if ((err as { code?: string }).code === 'P2003') throw conflict(`Repository ${namespace}/${name} still has versions`);
      throw err;
    }
    await this.permissions.forget(repoRef(namespace, name));
    await this.emit('repository.deleted', identity.login, `repository:${namespace}/${name}`, { namespace, name });
    return { deleted: 1 };
  }
}

const nsView = (row: Namespace) => ({ id: row.id, owner_id: row.owner });
const repoView = (row: Repository) => ({ name: row.name, namespace: row.namespace, owner_id: row.owner });

export type { PermissionLevel };
