/** A package or dependency as Cachito names it. */
export interface Pkg {
  name: string;
  type: string;
  version: string;
}

export interface Dependency extends Pkg {
  replaces: Pkg | null;
  /** Build/development only (npm dev, pip requirements-build): listed, but not a runtime dependency. */
  dev?: boolean;
}

/** A package a package manager found in the repository, with what it depends on. */
export interface PackageResult extends Pkg {
  /** Where in the repository (relative; "." for the root). */
  path: string;
  dependencies: Dependency[];
}

export interface EnvVar {
  value: string;
  kind: 'path' | 'literal';
}

export interface ConfigFile {
  path: string;
  type: 'base64';
  content: string;
}

/** A dependency file placed in the bundle, and the cache object holding it. */
export interface BundleFile {
  pm: string;
  /** Path inside the bundle, e.g. deps/npm/left-pad/-/left-pad-1.3.0.tgz */
  path: string;
  sha256: string;
  /** Package name and version the file belongs to (for the package index views). */
  name: string;
  version: string;
  /** npm: the lock file's integrity; pip: the file name. */
  integrity?: string;
}

export const STATES = ['complete', 'failed', 'in_progress', 'stale'] as const;
export type StateName = (typeof STATES)[number];

/** Every flag Cachito knows; the inactive ones are refused (Dockyard never runs `go`). */
export const ACTIVE_FLAGS = ['include-git-dir', 'remove-unsafe-symlinks', 'cgo-disable'] as const;
export const INACTIVE_FLAGS = ['gomod-vendor', 'gomod-vendor-check', 'force-gomod-tidy', 'pip-dev-preview'] as const;
