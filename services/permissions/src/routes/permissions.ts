import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { PermissionLevel, ResourceRef } from '@dockyard/contracts';
import { badRequest, findOperation, notAuthorized, notFound, routeSchema, type OpenApiDocument } from '@dockyard/kit';
import type { GranteeType, Grants } from '../domain/grants.js';

/** A change as the body of `PUT /permissions/...` gives it (validated against PermissionChange). */
export interface PermissionChange {
  operation: 'add' | 'delete';
  granteeType?: GranteeType;
  grantee?: string;
  permission?: PermissionLevel;
}

export interface GrantChangeEvent {
  resource: ResourceRef;
  actor: string | null;
  operation: 'add' | 'delete';
  granteeType: GranteeType | null;
  grantee: string | null;
  permission: PermissionLevel | null;
  count: number;
}

interface Deps {
  doc: OpenApiDocument;
  grants: Grants;
  onGrantChanged: (change: GrantChangeEvent) => Promise<void>;
}

// ECR's clients send a few hundred bytes; anything much larger is not a permission change.
const BODY_LIMIT = 16 * 1024;
const GRANT_FIELDS = ['granteeType', 'grantee', 'permission'] as const;

const resourceOf = (params: { namespace: string; repository?: string }): ResourceRef =>
  params.repository ? { type: 'repository', name: `${params.namespace}/${params.repository}` } : { type: 'namespace', name: params.namespace };

const missing = (resource: ResourceRef) => notFound(`${resource.type === 'namespace' ? 'Namespace' : 'Repository'} ${resource.name} not found`);

/**
 * ECR's `/permissions/{ns}` and `/permissions/{ns}/{repo}`: list (READ_ACP) and change (WRITE_ACP)
 * the grants on a namespace or repository.
 */
export const permissionRoutes: FastifyPluginAsync<Deps> = async (app, { doc, grants, onGrantChanged }) => {
  // ECR's clients send JSON with `curl -d`, i.e. under the form content type (or none at all); ECR
  // read the body as JSON whatever the type, and so do these routes (this plugin's scope only).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_request, text, done) => {
    if (!String(text).trim()) return done(null, {});
    try {
      done(null, JSON.parse(String(text)));
    } catch {
      done(badRequest('Body must be a JSON object, e.g. {"operation": "add", "granteeType": "USER", "grantee": "someone", "permission": "READ"}'));
    }
  });
  // No body at all reads as an empty one, so the 400 names the missing field.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined || request.body === null) request.body = {};
  });
  // One schema (PermissionChange) for the body whatever its content type: the form type's entry
  // in the document describes the same JSON text.
  const changeSchema = findOperation(doc, 'updateRepositoryPermissions').operation.requestBody!.content!['application/json'].schema!;

  /** The validated change; a delete names one grant completely or nothing. */
  function changeOf(request: FastifyRequest): PermissionChange {
    const change = request.body as PermissionChange;
    if (change.operation === 'delete' && GRANT_FIELDS.some((f) => change[f] !== undefined)) {
      const absent = GRANT_FIELDS.find((f) => change[f] === undefined);
      if (absent) throw badRequest(`Field ${absent} is required`);
    }
    return change;
  }

  const list = async (request: FastifyRequest) => {
    const resource = resourceOf(request.params as { namespace: string; repository?: string });
    // Refusal before existence: only someone who may read the grants learns whether it exists.
    if (!(await grants.allowed(request.identity, 'READ_ACP', resource))) throw notAuthorized(request.identity, 'READ_ACP', resource);
    if (!(await grants.exists(resource))) throw missing(resource);
    return grants.list(resource);
  };

  const update = async (request: FastifyRequest) => {
    const resource = resourceOf(request.params as { namespace: string; repository?: string });
    const change = changeOf(request);
    if (!(await grants.allowed(request.identity, 'WRITE_ACP', resource))) throw notAuthorized(request.identity, 'WRITE_ACP', resource);
    if (!(await grants.exists(resource))) throw missing(resource);
    const grant = change.granteeType ? { granteeType: change.granteeType, grantee: change.grantee!, permission: change.permission! } : undefined;
    const event = { resource, actor: request.identity.login, operation: change.operation, granteeType: null, grantee: null, permission: null, ...grant };
    if (change.operation === 'add') {
      const added = await grants.add(resource, grant!.granteeType, grant!.grantee, grant!.permission);
      if (added) await onGrantChanged({ ...event, count: added });
      return { added };
    }
    if (grant && (await grants.isOwnerGrant(resource, grant))) throw badRequest(`The owner's grant (${grant.granteeType} ${grant.grantee} ${grant.permission}) cannot be removed`);
    const deleted = await grants.remove(resource, grant);
    if (deleted) await onGrantChanged({ ...event, count: deleted });
    return { deleted };
  };

  for (const [list_, update_] of [
    ['listRepositoryPermissions', 'updateRepositoryPermissions'],
    ['listNamespacePermissions', 'updateNamespacePermissions'],
  ]) {
    app.route({ ...routeSchema(doc, list_), handler: list });
    const route = routeSchema(doc, update_);
    route.schema.body = changeSchema;
    app.route({ ...route, handler: update });
  }
};
