import { LRUCache } from 'lru-cache';
import type { NatsConnection } from '@nats-io/transport-node';
import type {
  PermissionLevel,
  PermissionsCheckReply,
  PermissionsCheckRequest,
  PermissionsVisibleReply,
  PermissionsVisibleRequest,
  ResourceRef,
} from '@dockyard/contracts';
import { unauthorized } from './errors.js';
import type { Identity } from './identity.js';
import { request, type Subjects } from './nats.js';

export interface PermissionsClientOptions {
  /** How long a decision is reused; any grant change drops every cached decision before that. */
  ttlMs?: number;
  max?: number;
  timeoutMs?: number;
}

/** ECR's refusal wording, kept by every service (openapi/registry.yaml). */
export function notAuthorized(identity: Identity, action: PermissionLevel, resource: ResourceRef) {
  const who = identity.login ? `User ${identity.login}` : 'Anonymous user';
  return unauthorized(`Not authorized. (${who} does not have permission ${action} for ${resource.type} ${resource.name})`);
}

/**
 * Asks the permissions service (one model for every service) whether an identity may act on a
 * namespace or repository. Decisions are cached briefly; a grant change anywhere (the
 * `events.permissions.grant.changed` event, or an own/forget made through this client) drops them,
 * so a revoked grant stops working at once rather than after the TTL.
 */
export class PermissionsClient {
  private readonly cache: LRUCache<string, boolean>;
  private readonly timeoutMs: number;
  private generation = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    opts: PermissionsClientOptions = {},
  ) {
    this.cache = new LRUCache({ max: opts.max ?? 50_000, ttl: Math.max(1, opts.ttlMs ?? 5_000) });
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    const sub = nc.subscribe(subjects.of('events.permissions.grant.changed'));
    void (async () => {
      for await (const _ of sub) this.invalidate();
    })();
  }

  /** Drops every cached decision (grants changed). */
  invalidate(): void {
    this.generation++;
    this.cache.clear();
  }

  async allowed(identity: Identity, action: PermissionLevel, resource: ResourceRef): Promise<boolean> {
    if (identity.admin) return true;
    const key = `${identity.login ?? ''}\0${identity.groups.join(',')}\0${action}\0${resource.type}\0${resource.name}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const generation = this.generation;
    const body: PermissionsCheckRequest = { identity: who(identity), action, resource };
    const { allowed } = await request<PermissionsCheckRequest, PermissionsCheckReply>(this.nc, this.subjects.of('permissions.check'), body, this.timeoutMs);
    // A decision fetched across a grant change may be stale: use it once, do not keep it.
    if (generation === this.generation) this.cache.set(key, allowed);
    return allowed;
  }

  /** Throws ECR's 401 "Not authorized. (User x does not have permission A for type name)" when refused. */
  async require(identity: Identity, action: PermissionLevel, resource: ResourceRef): Promise<void> {
    if (!(await this.allowed(identity, action, resource))) throw notAuthorized(identity, action, resource);
  }

  /** The namespaces and repositories an identity may act on at `action` (to filter listings). */
  async visible(identity: Identity, action: PermissionLevel): Promise<PermissionsVisibleReply> {
    if (identity.admin) return { all: true, namespaces: [], repositories: [] };
    const body: PermissionsVisibleRequest = { identity: who(identity), action };
    return request<PermissionsVisibleRequest, PermissionsVisibleReply>(this.nc, this.subjects.of('permissions.visible'), body, this.timeoutMs);
  }

  /** A resource was created: its creator owns it (FULL_CONTROL, kept by "delete all"). */
  async own(resource: ResourceRef, owner: string): Promise<void> {
    await request(this.nc, this.subjects.of('permissions.own'), { resource, owner }, this.timeoutMs);
    this.invalidate();
  }

  /** A resource was deleted: its grants (and, for a namespace, its repositories') go with it. */
  async forget(resource: ResourceRef): Promise<void> {
    await request(this.nc, this.subjects.of('permissions.forget'), { resource }, this.timeoutMs);
    this.invalidate();
  }
}

function who(identity: Identity): PermissionsCheckRequest['identity'] {
  return { login: identity.login, admin: identity.admin, groups: identity.groups };
}
