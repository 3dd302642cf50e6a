import type { Credential } from '@dockyard/contracts';
import { unauthorized } from '@dockyard/kit';
import { parse as parseCookie } from 'cookie';

/** The session cookie set by `POST /login` (permissions service). */
export const SESSION_COOKIE = 'session';

// ECR's wording, kept so its clients and tests see the same messages.
export const MSG_UNPARSABLE = 'Authorization failed (could not parse Authorization header)';
export const MSG_UNSUPPORTED = 'Authorization failed (Authorization bearer not supported)';

export type ParsedCredential = { kind: 'anonymous' } | { kind: 'jwt'; token: string } | { kind: 'resolve'; credential: Credential };

const looksLikeJwt = (t: string) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(t);

/**
 * Reads the credential of a request: `Authorization: sage|static|Bearer|Basic ...` (scheme matched
 * case-insensitively), else the session cookie, else anonymous. Throws the 401 ECR would send.
 */
export function parseCredential(authorization: string | undefined, cookieHeader: string | undefined): ParsedCredential {
  if (authorization !== undefined) {
    const parts = authorization.trim().split(/\s+/);
    if (parts.length !== 2 || !parts[1]) throw unauthorized(MSG_UNPARSABLE);
    const [scheme, value] = [parts[0].toLowerCase(), parts[1]];
    switch (scheme) {
      case 'sage':
      case 'static':
        return { kind: 'resolve', credential: { scheme: 'token', token: value } };
      case 'bearer':
        return looksLikeJwt(value) ? { kind: 'jwt', token: value } : { kind: 'resolve', credential: { scheme: 'token', token: value } };
      case 'basic': {
        const decoded = Buffer.from(value, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon < 1) throw unauthorized(MSG_UNPARSABLE);
        return { kind: 'resolve', credential: { scheme: 'basic', login: decoded.slice(0, colon), password: decoded.slice(colon + 1) } };
      }
      default:
        throw unauthorized(MSG_UNSUPPORTED);
    }
  }
  if (cookieHeader?.includes(`${SESSION_COOKIE}=`)) {
    const session = parseCookie(cookieHeader)[SESSION_COOKIE];
    if (session) return { kind: 'resolve', credential: { scheme: 'session', session } };
  }
  return { kind: 'anonymous' };
}
