import type { PermissionLevel, ResourceRef } from '@dockyard/contracts';
import type { Identity } from '@dockyard/kit';

/** Answers ECR permission questions (kit PermissionsClient: cached, dropped on grant changes). */
export interface PermissionChecker {
  allowed(identity: Identity, action: PermissionLevel, resource: ResourceRef): Promise<boolean>;
}

/** An event payload as published (openapi/events.yaml); only the fields the rules read are typed. */
export type EventPayload = Record<string, unknown> & { actor?: unknown; resource?: unknown };

type Rule = (event: EventPayload, caller: Identity, perms: PermissionChecker) => boolean | Promise<boolean>;

const str = (v: unknown): string | null => (typeof v === 'string' && v ? v : null);
const isLogin = (caller: Identity, v: unknown) => caller.login !== null && str(v) === caller.login;
const isActor = (e: EventPayload, caller: Identity) => isLogin(caller, e.actor);

/** `repository:ns/name` or `namespace:ns` from the envelope's `resource`; null for other types. */
export function ecrResource(resource: unknown): ResourceRef | null {
  const r = str(resource);
  if (!r) return null;
  const colon = r.indexOf(':');
  const [type, name] = [r.slice(0, colon), r.slice(colon + 1)];
  if (!name) return null;
  if (type === 'namespace' && !name.includes('/')) return { type, name };
  if (type === 'repository' && /^[^/]+\/[^/]+$/.test(name)) return { type, name };
  return null;
}

const canRead = (level: PermissionLevel): Rule => (e, caller, perms) => {
  const resource = ecrResource(e.resource);
  return resource !== null && perms.allowed(caller, level, resource);
};

/** ECR resources: whoever may READ the namespace/repository (AllUsers READ = anonymous too). */
const ecrRead = canRead('READ');
/** A deletion: its grants are gone with it, so its actor (who may have been its owner) gets it too. */
const ecrDeleted: Rule = (e, caller, perms) => isActor(e, caller) || ecrRead(e, caller, perms);
/** Owned resources (Kabuto images and builds, cache requests, processes): the owner's login. */
const ownerLogin: Rule = (e, caller) => isLogin(caller, e.owner);
/** Kabuto pipelines and jobs store their owner's user id. */
const ownerId: Rule = (e, caller) => caller.id !== null && str(e.ownerId) === caller.id;
/** Builds: an ECR build belongs to its repository (READ); a Kabuto or process build to its owner. */
const build: Rule = (e, caller, perms) => (e.kind === 'ecr' ? isLogin(caller, e.owner) || ecrRead(e, caller, perms) : ownerLogin(e, caller, perms));
/** Account and token events: the user they concern. */
const concernsLogin: Rule = (e, caller) => isLogin(caller, e.login);
/** Grant changes: who made it, the user or group it names, and whoever may read the grants (READ_ACP). */
const grantChanged: Rule = (e, caller, perms) =>
  isActor(e, caller) ||
  (e.granteeType === 'USER' && isLogin(caller, e.grantee)) ||
  (e.granteeType === 'GROUP' && typeof e.grantee === 'string' && caller.groups.includes(e.grantee)) ||
  canRead('READ_ACP')(e, caller, perms);

/**
 * Who may read each event (besides admins, who read everything). A subject missing here is read by
 * admins only, so a new event stays private until someone decides its rule (docs/events.md).
 */
export const EVENT_RULES: Record<string, Rule> = {
  'events.registry.app.submitted': ecrRead,
  'events.registry.app.frozen': ecrRead,
  'events.registry.app.deleted': ecrDeleted,
  'events.registry.namespace.created': ecrRead,
  'events.registry.namespace.deleted': ecrDeleted,
  'events.registry.repository.created': ecrRead,
  'events.registry.repository.deleted': ecrDeleted,
  'events.build.build.queued': build,
  'events.build.build.started': build,
  'events.build.build.finished': build,
  'events.execution.job.state': ownerId,
  'events.execution.pipeline.finished': ownerId,
  'events.source-cache.request.state': ownerLogin,
  'events.process.process.state': ownerLogin,
  'events.permissions.user.registered': concernsLogin,
  'events.permissions.user.confirmed': concernsLogin,
  'events.permissions.token.revoked': concernsLogin,
  'events.permissions.grant.changed': grantChanged,
};

/** May `caller` read this event (catalog subject, without the deployment prefix)? */
export async function mayRead(subject: string, event: EventPayload, caller: Identity, perms: PermissionChecker): Promise<boolean> {
  if (caller.admin) return true;
  const rule = EVENT_RULES[subject];
  if (!rule) return false;
  try {
    return await rule(event, caller, perms);
  } catch {
    // The permissions service did not answer: refuse rather than leak.
    return false;
  }
}

// ---------------------------------------------------------------- subject filters

const MAX_FILTERS = 32;
const TOKEN = /^[A-Za-z0-9_-]+$|^\*$|^>$/;

/**
 * Parses `?subjects=` (comma-separated NATS patterns, each starting with `events.`); throws a
 * message naming the bad entry. An empty or absent value means every event (`events.>`).
 */
export function parseSubjectFilter(value: string | undefined): string[] {
  if (value === undefined || value.trim() === '') return ['events.>'];
  const patterns = value.split(',').map((s) => s.trim());
  if (patterns.length > MAX_FILTERS) throw new Error(`subjects: at most ${MAX_FILTERS} patterns`);
  for (const p of patterns) {
    const tokens = p.split('.');
    const valid =
      p.length <= 256 &&
      tokens[0] === 'events' &&
      tokens.length >= 2 &&
      tokens.every((t, i) => TOKEN.test(t) && (t !== '>' || i === tokens.length - 1));
    if (!valid) throw new Error(`subjects: ${JSON.stringify(p)} is not a subject pattern starting with "events." (tokens of letters, digits, - and _, or the wildcards * and a final >)`);
  }
  return patterns;
}

/** Does a subject match a NATS pattern (`*` one token, `>` one or more trailing tokens)? */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
