import { notFound, unauthorized, type Identity } from '@dockyard/kit';

/** Every Kabuto call needs a logged-in caller (Kabuto's own rule). */
export function requireUser(identity: Identity): { id: string; login: string } {
  if (!identity?.id || !identity.login) throw unauthorized('You must be logged in');
  return { id: identity.id, login: identity.login };
}

/**
 * Pipelines and jobs are private to their owner; admins may act on any. Kabuto never checked this;
 * Dockyard does, and a foreign resource is indistinguishable from a missing one (404).
 */
export function assertOwner(identity: Identity, ownerId: string, what: 'Pipeline' | 'Job'): void {
  requireUser(identity);
  if (!identity.admin && identity.id !== ownerId) throw notFound(`${what} not found`);
}
