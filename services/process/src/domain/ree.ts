import { badRequest } from '@dockyard/kit';
import type { OsRelease, Pkg } from './packages.js';

/** The record of a defined REE inside its zip. */
export const REE_FILE = 'ree.json';

export interface BaseRecord {
  /** The FROM reference as written (or the configured base image). */
  reference: string;
  /** The engine's image id (`sha256:...`). */
  imageId: string;
  /** `repo@sha256:...` when the image came from a registry; null for local images. */
  repoDigest: string | null;
  /** What FROM now says: the repository digest, else the image id. */
  pinned: string;
  name?: string;
}

export interface ReeFile {
  schema: 'dockyard.ree/1';
  strategy: 'recording' | 'sbom';
  /** exact: the rebuilt package set must equal `packages`; listed: each of `packages` must be there. */
  verification: 'exact' | 'listed';
  dockerfile: string;
  input: { sha256: string; [k: string]: unknown };
  bases: BaseRecord[];
  os: OsRelease | null;
  architecture: string | null;
  /** Packages whose versions the Dockerfile pins. */
  pinned: Pkg[];
  /** Every package recorded (recording) or listed (SBOM). */
  packages: Pkg[];
  timestamps: { started?: string; defined: string };
  process: string;
}

const SAFE_PATH = /^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._/-]+$/;

/** Reads and checks a defined REE's ree.json (400 naming the problem). */
export function parseRee(raw: Buffer | undefined): ReeFile {
  if (!raw) throw badRequest(`file: not a defined REE (${REE_FILE} missing)`);
  let ree: ReeFile;
  try {
    ree = JSON.parse(raw.toString('utf8')) as ReeFile;
  } catch (err) {
    throw badRequest(`file: ${REE_FILE} is not valid JSON (${(err as Error).message})`);
  }
  if (!ree || ree.schema !== 'dockyard.ree/1') throw badRequest(`file: ${REE_FILE} is not a Dockyard REE record (schema must be dockyard.ree/1)`);
  if (ree.strategy !== 'recording' && ree.strategy !== 'sbom') throw badRequest(`file: ${REE_FILE} has an unknown strategy`);
  if (ree.verification !== 'exact' && ree.verification !== 'listed') throw badRequest(`file: ${REE_FILE} has an unknown verification mode`);
  if (typeof ree.dockerfile !== 'string' || !SAFE_PATH.test(ree.dockerfile)) throw badRequest(`file: ${REE_FILE} names an invalid dockerfile`);
  if (!Array.isArray(ree.packages) || ree.packages.some((p) => !p || typeof p.name !== 'string' || typeof p.version !== 'string' || typeof p.type !== 'string')) {
    throw badRequest(`file: ${REE_FILE} has an invalid packages list`);
  }
  if (!Array.isArray(ree.bases) || ree.bases.some((b) => !b || typeof b.pinned !== 'string' || typeof b.reference !== 'string')) throw badRequest(`file: ${REE_FILE} has an invalid bases list`);
  return ree;
}
