import type { FastifyPluginAsync } from 'fastify';
import type { PermissionLevel } from '@dockyard/contracts';
import { badRequest, routeSchema, type Identity, type OpenApiDocument } from '@dockyard/kit';
import type { Grants } from '../domain/grants.js';
import { signRegistryToken, type Access, type SigningKey } from '../domain/registry-token.js';

interface Deps {
  doc: OpenApiDocument;
  grants: Grants;
  signing: SigningKey;
  service: string;
  issuer: string;
  ttlSeconds: number;
}

/** The level each registry action needs on the repository (ECR's model). */
const NEEDS: Record<string, PermissionLevel> = { pull: 'READ', push: 'WRITE', delete: 'FULL_CONTROL', '*': 'FULL_CONTROL' };

interface Scope {
  type: string;
  name: string;
  actions: string[];
}

/** `repository:sage/simple:pull,push` (the name may not hold `:` here: ECR names never do). */
export function parseScope(scope: string): Scope {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 1 || last === first) throw badRequest(`scope: "${scope}" is not of the form repository:<namespace>/<name>:<actions>`);
  const actions = scope.slice(last + 1).split(',').filter(Boolean);
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: [...new Set(actions)] };
}

/** The actions of a scope the identity may perform: pull needs READ, push WRITE, delete FULL_CONTROL. */
export async function grantedActions(grants: Grants, identity: Identity, scope: Scope): Promise<string[]> {
  if (identity.admin) return scope.actions;
  // Only repositories are governed by grants; the catalog and anything else is for admins.
  if (scope.type !== 'repository') return [];
  const granted: string[] = [];
  const decided = new Map<PermissionLevel, boolean>();
  for (const action of scope.actions) {
    const level = NEEDS[action];
    if (!level) continue;
    if (!decided.has(level)) {
      // A name outside ECR's `<namespace>/<name>` shape has no grants: nothing is allowed on it.
      const ok = await grants.allowed(identity, level, { type: 'repository', name: scope.name }).catch((err: { statusCode?: number }) => {
        if (err.statusCode === 400) return false;
        throw err;
      });
      decided.set(level, ok);
    }
    if (decided.get(level)) granted.push(action);
  }
  return granted;
}

/**
 * The OCI registry's token service (Distribution's `auth.token`): a JWT granting the requested
 * actions the permission model allows, signed with the key whose certificate the registry trusts.
 */
export const registryTokenRoutes: FastifyPluginAsync<Deps> = async (app, { doc, grants, signing, service, issuer, ttlSeconds }) => {
  app.route({
    ...routeSchema(doc, 'getRegistryToken'),
    handler: async (request, reply) => {
      const query = request.query as { service: string; scope?: string[] };
      if (query.service !== service) throw badRequest(`service: this token service signs for "${service}", not "${query.service}"`);
      // Scopes come as repeated parameters; some clients put several in one, space-separated.
      const scopes = (query.scope ?? []).flatMap((s) => s.split(/\s+/)).filter(Boolean).map(parseScope);
      if (scopes.length > 100) throw badRequest('scope: at most 100 scopes');
      const access: Access[] = [];
      for (const scope of scopes) {
        const actions = await grantedActions(grants, request.identity, scope);
        const same = access.find((a) => a.type === scope.type && a.name === scope.name);
        if (same) same.actions = [...new Set([...same.actions, ...actions])];
        else access.push({ type: scope.type, name: scope.name, actions });
      }
      const issuedAt = new Date();
      const token = signRegistryToken(signing, { issuer, subject: request.identity.login ?? '', audience: service, ttlSeconds, access }, issuedAt);
      reply.header('cache-control', 'no-store');
      return { token, access_token: token, expires_in: ttlSeconds, issued_at: issuedAt.toISOString() };
    },
  });
};
