/** Where a build's context comes from and how to build it (stored as `builds.spec`). */
export type ContextSource =
  /** A tar in the service's blob store (Kabuto dockerfile + attachments). */
  | { source: 'blob'; key: string }
  /** A git repository, cloned by the worker (ECR source, Kabuto repo_url). */
  | { source: 'git'; url: string; commit?: string | null; branch?: string | null; tag?: string | null; directory: string; submodules: boolean }
  /** A tar in the JetStream object store (build.request from another service). */
  | { source: 'object'; name: string };

export interface BuildSpec {
  context: ContextSource;
  /** Path of the Dockerfile inside the context. */
  dockerfile: string;
  buildArgs: Record<string, string>;
  /** Platforms asked for, e.g. ["linux/amd64", "linux/arm64"]. */
  platforms: string[];
  /** Repository (without tag) images are tagged with, e.g. `127.0.0.1:5000/sage/simple`, and tag. */
  repository: string | null;
  tag: string | null;
  /** Extra full tags (build.request). */
  tags: string[];
  /** The Kabuto Dockerfile text, kept for GET /image/<id>. */
  dockerfileText?: string | null;
  label?: string | null;
}

export type BuildKind = 'ecr' | 'kabuto' | 'process';
export type BuildState = 'QUEUED' | 'BUILDING' | 'SUCCESS' | 'FAILURE' | 'ABORTED';
export type Result = 'SUCCESS' | 'FAILURE' | 'ABORTED';

export interface PlatformState {
  platform: string;
  state: BuildState;
  digest: string | null;
  error: string | null;
}

export const TERMINAL: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'ABORTED']);

/** A failure of the build itself (Dockerfile, context, source) as opposed to the service. */
export class BuildFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildFailure';
  }
}
