import { createHash, randomBytes } from 'node:crypto';

/** A new random secret (API token, session, confirmation), URL-safe. */
export const newSecret = (prefix = '') => prefix + randomBytes(32).toString('base64url');

/** How secrets are stored: sha256 is enough for random secrets and keeps lookups indexed. */
export const hashSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');
