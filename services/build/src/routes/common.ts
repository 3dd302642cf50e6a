import type { FastifyRequest } from 'fastify';
import { unauthorized, type Identity } from '@dockyard/kit';

export type Caller = Identity & { login: string };

/** The caller, who must be signed in (Kabuto endpoints). */
export function signedIn(request: FastifyRequest): Caller {
  if (!request.identity?.login) throw unauthorized('Authentication required');
  return request.identity as Caller;
}

/** A login as a registry path component (lower case, docker's allowed characters). */
export function pathComponent(login: string): string {
  return login.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[._-]+|[._-]+$/g, '') || 'user';
}
