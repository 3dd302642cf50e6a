import { createSigner, createVerifier } from 'fast-jwt';
import { unauthorized } from './errors.js';

/** Who is calling, as the gateway resolved it. Services trust nothing else. */
export interface Identity {
  /** The user's id; null when anonymous. */
  id: string | null;
  login: string | null;
  admin: boolean;
  approved: boolean;
  groups: string[];
  /** Extra privileges, e.g. `worker` (Cachito worker endpoints) or `impersonate`. */
  roles: string[];
}

export const ANONYMOUS: Identity = Object.freeze({ id: null, login: null, admin: false, approved: false, groups: [], roles: [] }) as Identity;

/** The header carrying the internal identity token from the gateway to a service. */
export const IDENTITY_HEADER = 'x-dockyard-identity';

const ISSUER = 'dockyard-gateway';

/** Signs short-lived internal identity tokens (HS256 with the shared internal secret). */
export function identitySigner(secret: string, ttlMs = 60_000): (identity: Identity) => string {
  const sign = createSigner({ key: secret, algorithm: 'HS256', iss: ISSUER, expiresIn: ttlMs });
  return (identity) => sign({ idn: identity });
}

/** Verifies internal identity tokens; verified tokens are cached until they expire. */
export function identityVerifier(secret: string): (token: string | undefined) => Identity {
  const verify = createVerifier({ key: secret, algorithms: ['HS256'], allowedIss: ISSUER, cache: 10_000, requiredClaims: ['exp', 'iss'] });
  return (token) => {
    if (!token) throw unauthorized('Missing internal identity token (requests must come through the gateway)');
    try {
      return (verify(token) as { idn: Identity }).idn;
    } catch {
      throw unauthorized('Invalid or expired internal identity token');
    }
  };
}
