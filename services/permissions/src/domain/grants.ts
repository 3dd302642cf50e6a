import type { PermissionLevel, ResourceRef } from '@dockyard/contracts';
import { badRequest } from '@dockyard/kit';
import type { PrismaClient } from '../generated/prisma/client.js';
import { ALL_USERS } from './groups.js';

export type GranteeType = 'USER' | 'GROUP';

/** One grant as ECR lists it. */
export interface GrantView {
  grantee: string;
  granteeType: GranteeType;
  permission: PermissionLevel;
  resourceName: string;
  resourceType: ResourceRef['type'];
}

/** Who may act: the identity the gateway resolved. */
export interface Grantee {
  login: string | null;
  admin: boolean;
  groups: string[];
}

// The contract's hierarchy (openapi/permissions.yaml, PermissionLevel): FULL_CONTROL implies
// every level, WRITE implies READ, WRITE_ACP implies READ_ACP.
const SATISFIES: Record<PermissionLevel, PermissionLevel[]> = {
  READ: ['READ', 'WRITE', 'FULL_CONTROL'],
  WRITE: ['WRITE', 'FULL_CONTROL'],
  READ_ACP: ['READ_ACP', 'WRITE_ACP', 'FULL_CONTROL'],
  WRITE_ACP: ['WRITE_ACP', 'FULL_CONTROL'],
  FULL_CONTROL: ['FULL_CONTROL'],
};

// Lowercase letters, digits, '.', '_', '-', starting with a letter or digit (so never '.' or '..').
const NAME = /^[a-z0-9][a-z0-9._-]*$/;

/** The resources whose grants apply to `resource`: a repository inherits from its namespace. */
function governing(resource: ResourceRef): { resourceType: string; resourceName: string }[] {
  validate(resource);
  if (resource.type === 'namespace') return [{ resourceType: 'namespace', resourceName: resource.name }];
  return [
    { resourceType: 'repository', resourceName: resource.name },
    { resourceType: 'namespace', resourceName: resource.name.split('/')[0] },
  ];
}

/** The grantees whose grants apply to `who`: itself, its groups and AllUsers (everyone, anonymous too). */
function granteesOf(who: Grantee): { granteeType: string; grantee: string }[] {
  const grantees = [{ granteeType: 'GROUP', grantee: ALL_USERS }, ...who.groups.map((g) => ({ granteeType: 'GROUP', grantee: g }))];
  if (who.login) grantees.push({ granteeType: 'USER', grantee: who.login });
  return grantees;
}

function validate(resource: ResourceRef): void {
  const parts = resource.name.split('/');
  const expected = resource.type === 'namespace' ? 1 : 2;
  if (parts.length !== expected || !parts.every((p) => NAME.test(p))) throw badRequest(`Invalid ${resource.type} name "${resource.name}"`);
}

/** ECR's permission model: grants on namespaces and repositories, and the check every service asks for. */
export class Grants {
  constructor(private readonly prisma: PrismaClient) {}

  /** May `who` perform `action` on `resource`? Admins may do anything; AllUsers grants apply to everyone. */
  async allowed(who: Grantee, action: PermissionLevel, resource: ResourceRef): Promise<boolean> {
    if (who.admin) return true;
    const match = await this.prisma.grant.findFirst({
      where: { OR: governing(resource), permission: { in: SATISFIES[action] }, AND: [{ OR: granteesOf(who) }] },
      select: { id: true },
    });
    return match !== null;
  }

  /**
   * The namespaces and repositories on which `who` holds `action` through some grant (its own, its
   * groups', AllUsers'): what a listing may show. Admins see everything.
   */
  async visible(who: Grantee, action: PermissionLevel): Promise<{ all: boolean; namespaces: string[]; repositories: string[] }> {
    if (who.admin) return { all: true, namespaces: [], repositories: [] };
    const rows = await this.prisma.grant.findMany({
      where: { permission: { in: SATISFIES[action] }, OR: granteesOf(who) },
      select: { resourceType: true, resourceName: true },
      distinct: ['resourceType', 'resourceName'],
    });
    const pick = (type: string) => rows.filter((r) => r.resourceType === type).map((r) => r.resourceName).sort();
    return { all: false, namespaces: pick('namespace'), repositories: pick('repository') };
  }

  /** Adds a grant; 1 when new, 0 when it already existed (ECR's `{"added": n}`). */
  async add(resource: ResourceRef, granteeType: GranteeType, grantee: string, permission: PermissionLevel, owner = false): Promise<number> {
    validate(resource);
    const key = { resourceType: resource.type, resourceName: resource.name, granteeType, grantee, permission };
    const existing = await this.prisma.grant.findUnique({ where: { resourceType_resourceName_granteeType_grantee_permission: key } });
    if (existing) {
      if (owner && !existing.owner) await this.prisma.grant.update({ where: { id: existing.id }, data: { owner: true } });
      return 0;
    }
    try {
      await this.prisma.grant.create({ data: { ...key, owner } });
      return 1;
    } catch (err) {
      if ((err as { code?: string }).code === 'P2002') return 0; // added concurrently
      throw err;
    }
  }

  /**
   * Removes the matching grant, or with no grant given every grant except the owner's
   * (ECR's `{"operation": "delete"}`). The owner's FULL_CONTROL is never removed.
   */
  async remove(resource: ResourceRef, grant?: { granteeType: GranteeType; grantee: string; permission: PermissionLevel }): Promise<number> {
    validate(resource);
    const { count } = await this.prisma.grant.deleteMany({
      where: { resourceType: resource.type, resourceName: resource.name, owner: false, ...(grant ?? {}) },
    });
    return count;
  }

  /** Drops every grant of a deleted resource (and, for a namespace, of its repositories). */
  async forget(resource: ResourceRef): Promise<number> {
    validate(resource);
    const where =
      resource.type === 'namespace'
        ? { OR: [{ resourceType: 'namespace', resourceName: resource.name }, { resourceType: 'repository', resourceName: { startsWith: `${resource.name}/` } }] }
        : { resourceType: 'repository', resourceName: resource.name };
    return (await this.prisma.grant.deleteMany({ where })).count;
  }

  /**
   * Whether the resource exists as far as permissions can tell: the registry gives every
   * namespace and repository it creates an owner (`permissions.own`) and forgets them on deletion.
   */
  async exists(resource: ResourceRef): Promise<boolean> {
    validate(resource);
    const owner = await this.prisma.grant.findFirst({ where: { resourceType: resource.type, resourceName: resource.name, owner: true }, select: { id: true } });
    return owner !== null;
  }

  /** Whether the named grant is the owner's (which "delete" never removes). */
  async isOwnerGrant(resource: ResourceRef, grant: { granteeType: GranteeType; grantee: string; permission: PermissionLevel }): Promise<boolean> {
    validate(resource);
    const row = await this.prisma.grant.findFirst({ where: { resourceType: resource.type, resourceName: resource.name, owner: true, ...grant }, select: { id: true } });
    return row !== null;
  }

  /** The grants made directly on a resource, in ECR's shape. */
  async list(resource: ResourceRef): Promise<GrantView[]> {
    validate(resource);
    const rows = await this.prisma.grant.findMany({
      where: { resourceType: resource.type, resourceName: resource.name },
      orderBy: [{ owner: 'desc' }, { createdAt: 'asc' }],
    });
    return rows.map((g) => ({
      grantee: g.grantee,
      granteeType: g.granteeType as GranteeType,
      permission: g.permission as PermissionLevel,
      resourceName: g.resourceName,
      resourceType: g.resourceType as ResourceRef['type'],
    }));
  }
}
