/**
 * The NATS subject catalog: every subject Dockyard uses, its payload, who publishes and who
 * consumes. Wire subjects get the deployment's DOCKYARD_NATS_PREFIX in front (kit `Subjects`).
 */

/** A credential as the gateway saw it, sent to the permissions service to resolve. */
export type Credential =
  | { scheme: 'token'; token: string }
  | { scheme: 'basic'; login: string; password: string }
  | { scheme: 'session'; session: string }
  | { scheme: 'jwt'; subject: string };

/** The identity a credential resolved to (null when it matched no one). */
export interface ResolvedIdentity {
  id: string;
  login: string;
  admin: boolean;
  approved: boolean;
  groups: string[];
  roles: string[];
}

export interface IdentityResolveRequest {
  credential: Credential;
}
export type IdentityResolveReply = { identity: ResolvedIdentity } | { identity: null; reason: string };

export type PermissionLevel = 'READ' | 'WRITE' | 'READ_ACP' | 'WRITE_ACP' | 'FULL_CONTROL';
/** A namespace (`sage`) or a repository (`sage/simple`) in ECR's model. */
export interface ResourceRef {
  type: 'namespace' | 'repository';
  name: string;
}
export interface PermissionsCheckRequest {
  identity: { login: string | null; admin: boolean; groups: string[] };
  action: PermissionLevel;
  resource: ResourceRef;
}
export interface PermissionsCheckReply {
  allowed: boolean;
}
/** A resource was created: its creator gets FULL_CONTROL as owner (kept by "delete all"). */
export interface PermissionsOwnRequest {
  resource: ResourceRef;
  owner: string;
}
/** A resource was deleted: its grants go with it. */
export interface PermissionsForgetRequest {
  resource: ResourceRef;
}

interface SubjectInfo {
  kind: 'request' | 'event' | 'work' | 'log';
  publishers: string[];
  consumers: string[];
  description: string;
}

/** Request/reply subjects and their payload types. */
export interface RequestSubjects {
  'identity.resolve': { request: IdentityResolveRequest; reply: IdentityResolveReply };
  'permissions.check': { request: PermissionsCheckRequest; reply: PermissionsCheckReply };
  'permissions.own': { request: PermissionsOwnRequest; reply: { added: number } };
  'permissions.forget': { request: PermissionsForgetRequest; reply: { deleted: number } };
}

export const SUBJECTS = {
  'identity.resolve': {
    kind: 'request',
    publishers: ['gateway'],
    consumers: ['permissions'],
    description: 'Resolve a credential (token, password, session, JWT subject) to an identity.',
  },
  'permissions.check': {
    kind: 'request',
    publishers: ['registry', 'build', 'execution', 'source-cache', 'process'],
    consumers: ['permissions'],
    description: 'May this identity perform this action on this resource?',
  },
  'permissions.own': {
    kind: 'request',
    publishers: ['registry'],
    consumers: ['permissions'],
    description: 'A namespace or repository was created: grant its creator FULL_CONTROL as owner.',
  },
  'permissions.forget': {
    kind: 'request',
    publishers: ['registry'],
    consumers: ['permissions'],
    description: 'A namespace or repository was deleted: drop its grants.',
  },
  'events.permissions.user.registered': {
    kind: 'event',
    publishers: ['permissions'],
    consumers: [],
    description: 'A Kabuto account was registered (payload UserRegistered in openapi/events.yaml).',
  },
  'events.permissions.user.confirmed': {
    kind: 'event',
    publishers: ['permissions'],
    consumers: [],
    description: 'A registered account was confirmed (payload UserConfirmed).',
  },
  'events.permissions.token.revoked': {
    kind: 'event',
    publishers: ['permissions'],
    consumers: ['gateway'],
    description: 'An API token was revoked; gateways drop it from their credential cache (payload TokenRevoked).',
  },
  'work.source-cache.request': {
    kind: 'work',
    publishers: ['source-cache'],
    consumers: ['source-cache'],
    description: 'A Cachito request to process (`{id}`); stream SOURCE_CACHE_WORK, durable source-cache-workers, acked once the outcome is stored.',
  },
  'source-cache.worker.ping': {
    kind: 'request',
    publishers: ['source-cache'],
    consumers: ['source-cache'],
    description: 'Every source-cache worker answers with its name (`/api/v1/status` lists them).',
  },
  'events.source-cache.request.state': {
    kind: 'event',
    publishers: ['source-cache'],
    consumers: [],
    description: 'A Cachito request changed state (payload RequestState in openapi/events.yaml).',
  },
} as const satisfies Record<string, SubjectInfo>;

export type SubjectName = keyof typeof SUBJECTS;
