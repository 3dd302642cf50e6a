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
/** Which resources may this identity act on at this level? Used to list only what a caller may see. */
export interface PermissionsVisibleRequest {
  identity: PermissionsCheckRequest['identity'];
  action: PermissionLevel;
}
/**
 * `all` for admins; otherwise the namespaces (whose every repository is covered) and the single
 * repositories on which some grant gives the identity `action` (its own, its groups', AllUsers').
 */
export interface PermissionsVisibleReply {
  all: boolean;
  namespaces: string[];
  repositories: string[];
}

/** An app version as the registry stores it (GET /apps/{ns}/{repo}/{ver}), for the build service. */
export interface RegistryApp {
  id: string;
  owner: string;
  namespace: string;
  name: string;
  version: string;
  frozen: boolean;
  description: string;
  source: {
    url: string;
    branch?: string;
    tag?: string;
    directory?: string;
    dockerfile: string;
    build_args: Record<string, string>;
    architectures: string[];
    name?: string;
    git_commit?: string;
  };
  [field: string]: unknown;
  /** The source commit recorded at submit ('' when the submit did not clone). */
  commit: string;
  /** Blob key of the source archive (gzipped tar) in the registry's blob store; null when none. */
  sourceArchive: string | null;
}
export interface RegistryAppGetRequest {
  namespace: string;
  name: string;
  version: string;
}
export interface RegistryAppGetReply {
  app: RegistryApp | null;
}

/** A Kabuto image, as the build service answers `build.image.get`. */
export interface BuildImageGetRequest {
  id: string;
}
export interface BuildImageGetReply {
  image: {
    id: string;
    owner: string;
    name: string;
    /** Pullable: `<registry>/kabuto/<owner>/<name>@sha256:...` (or a local tag when not pushed). */
    reference: string;
    state: 'PENDING' | 'SUCCESS' | 'FAILED' | 'FAILURE';
  } | null;
}

/** A build asked for by another service; the context tar is first put in the object store (kit build-context.ts). */
export interface BuildRequestRequest {
  contextObject: string;
  dockerfile: string;
  buildArgs: Record<string, string>;
  tags: string[];
  nocache?: boolean;
  platform?: string;
  owner: string;
  push?: boolean;
  label?: string;
}
export interface BuildRequestReply {
  buildId: string;
}
/** Cancel a build asked for with build.request: a queued one ends ABORTED at once, a running one is stopped. */
export interface BuildCancelRequest {
  buildId: string;
}
/** The build's state after the cancel (null when there is no such build). */
export interface BuildCancelReply {
  state: string | null;
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
  'permissions.visible': { request: PermissionsVisibleRequest; reply: PermissionsVisibleReply };
  'registry.app.get': { request: RegistryAppGetRequest; reply: RegistryAppGetReply };
  'build.image.get': { request: BuildImageGetRequest; reply: BuildImageGetReply };
  'build.request': { request: BuildRequestRequest; reply: BuildRequestReply };
  'build.cancel': { request: BuildCancelRequest; reply: BuildCancelReply };
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
  'permissions.visible': {
    kind: 'request',
    publishers: ['registry', 'build', 'execution'],
    consumers: ['permissions'],
    description: 'Which namespaces and repositories may this identity act on at this level (for listings)?',
  },
  'events.permissions.grant.changed': {
    kind: 'event',
    publishers: ['permissions'],
    consumers: ['registry', 'build', 'execution', 'source-cache', 'process'],
    description: 'Grants on a namespace or repository changed; callers drop cached permission decisions (payload GrantChanged in openapi/events.yaml).',
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
  'registry.app.get': {
    kind: 'request',
    publishers: ['build'],
    consumers: ['registry'],
    description: 'An app version as stored (GET /apps/{ns}/{repo}/{ver}) plus its recorded commit and source archive key; null when missing.',
  },
  'build.image.get': {
    kind: 'request',
    publishers: ['execution'],
    consumers: ['build'],
    description: 'A Kabuto image by id: owner, name, pullable reference, state.',
  },
  'build.request': {
    kind: 'request',
    publishers: ['process'],
    consumers: ['build'],
    description: 'Queue a build of a context tar from the object store (kit contextBucket); replies with the build id.',
  },
  'build.cancel': {
    kind: 'request',
    publishers: ['process'],
    consumers: ['build'],
    description: 'Cancel a build asked for with build.request, queued or running; replies with its state then.',
  },
  'build.abort': {
    kind: 'request',
    publishers: ['build'],
    consumers: ['build'],
    description: 'Abort a running build (core NATS, every worker listens; the one running it stops it).',
  },
  'work.build': {
    kind: 'work',
    publishers: ['build'],
    consumers: ['build'],
    description: 'Work queue of builds (stream BUILD_WORK, payload {buildId}); acked once the result is stored.',
  },
  'events.build.build.queued': {
    kind: 'event',
    publishers: ['build'],
    consumers: [],
    description: 'A build was queued (payload BuildQueued in openapi/events.yaml).',
  },
  'events.build.build.started': {
    kind: 'event',
    publishers: ['build'],
    consumers: [],
    description: 'A worker started a build (payload BuildStarted).',
  },
  'events.build.build.finished': {
    kind: 'event',
    publishers: ['build'],
    consumers: ['process'],
    description: 'A build ended SUCCESS, FAILURE or ABORTED with image, digest and error (payload BuildFinished).',
  },
  'logs.build.<id>': {
    kind: 'log',
    publishers: ['build'],
    consumers: ['gateway', 'process'],
    description: 'Live build output, one message per line: {seq, platform, line}; a final {end: true, result}. Stored durably too.',
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
  'events.registry.app.submitted': {
    kind: 'event',
    publishers: ['registry'],
    consumers: [],
    description: 'An app version was submitted or overwritten (payload AppSubmitted in openapi/events.yaml).',
  },
  'events.registry.app.frozen': {
    kind: 'event',
    publishers: ['registry'],
    consumers: [],
    description: 'An app version was frozen or unfrozen (payload AppFrozen).',
  },
  'events.registry.app.deleted': {
    kind: 'event',
    publishers: ['registry'],
    consumers: [],
    description: 'An app version was deleted (payload AppDeleted).',
  },
  'events.registry.namespace.created': {
    kind: 'event',
    publishers: ['registry'],
    consumers: [],
    description: 'A namespace was created, explicitly or by a submit (payload NamespaceCreated).',
  },
  'events.registry.namespace.deleted': {
    kind: 'event',
    publishers: ['registry'],
    consumers: [],
    description: 'A namespace was deleted (payload NamespaceDeleted).',
  },
  'events.registry.repository.created': {
    kind: 'event',
    publishers: ['registry'],
    consumers: [],
    description: 'A repository was created by a submit (payload RepositoryCreated).',
  },
  'events.registry.repository.deleted': {
    kind: 'event',
    publishers: ['registry'],
    consumers: [],
    description: 'A repository was deleted (payload RepositoryDeleted).',
  },
  'work.process': {
    kind: 'work',
    publishers: ['process'],
    consumers: ['process'],
    description: 'Work queue of REE processes (stream PROCESS_WORK, payload {uuid}); acked once the outcome is stored.',
  },
  'events.process.process.state': {
    kind: 'event',
    publishers: ['process'],
    consumers: [],
    description: 'An REE process changed status: queued, processing, processed or failed (payload ProcessState in openapi/events.yaml).',
  },
  'execution.pipeline.run': {
    kind: 'work',
    publishers: ['execution'],
    consumers: ['execution'],
    description: "Run one submission of a pipeline (ExecutionPipelineRun); stream EXECUTION, durable 'runners'; acked after every job's outcome is stored.",
  },
  'execution.job.kill': {
    kind: 'request',
    publishers: ['execution'],
    consumers: ['execution'],
    description: 'Stop a running job (ExecutionJobKill); core NATS, the worker running it kills its container.',
  },
  'logs.job.*': {
    kind: 'log',
    publishers: ['execution'],
    consumers: ['execution', 'gateway'],
    description: 'Live log lines of a job (JobLogMessage): batches as stored, then an end marker.',
  },
  'events.execution.job.state': {
    kind: 'event',
    publishers: ['execution'],
    consumers: [],
    description: 'A Kabuto job changed state (payload JobState in openapi/events.yaml).',
  },
  'events.execution.pipeline.finished': {
    kind: 'event',
    publishers: ['execution'],
    consumers: [],
    description: 'The last job of a submitted pipeline ended (payload PipelineFinished).',
  },
} as const satisfies Record<string, SubjectInfo>;

export type SubjectName = keyof typeof SUBJECTS;

// ---- execution's message payloads ----

/** Work message on `execution.pipeline.run` (JetStream work queue `EXECUTION`): run one submission of a pipeline. */
export interface ExecutionPipelineRun {
  pipelineId: number;
  /** The pipeline's submission counter; a message for an older submission is dropped. */
  run: number;
  actor: string | null;
}

/** Core NATS `execution.job.kill`: whichever worker runs the job stops its container. */
export interface ExecutionJobKill {
  jobId: number;
  by: string;
}

/** Messages on `logs.job.<id>`: batches of stored lines, then one `end` when the job ends. */
export type JobLogMessage =
  | { lines: { id: number; job: number; logline: string }[] }
  | { end: true; id: number; state: string };
