/** Unit tests of the /events read rules and subject filters (a fake permission checker). */
import type { ResourceRef } from '@dockyard/contracts';
import { ANONYMOUS, type Identity } from '@dockyard/kit';
import { EVENT_RULES, ecrResource, mayRead, parseSubjectFilter, subjectMatches, type PermissionChecker } from '../src/events-access.js';

const user = (login: string, extra: Partial<Identity> = {}): Identity => ({ id: `id-${login}`, login, admin: false, approved: true, groups: [], roles: [], ...extra });
const alice = user('alice', { groups: ['devs'] });
const bob = user('bob');
const admin = user('root', { admin: true });

/** alice may READ repository a/pub and everyone may READ a/open; alice has READ_ACP on namespace a. */
const perms: PermissionChecker = {
  async allowed(identity, action, resource: ResourceRef) {
    if (resource.name === 'a/open' && action === 'READ') return true;
    if (identity.login !== 'alice') return false;
    return (action === 'READ' && resource.name === 'a/pub') || (action === 'READ_ACP' && resource.type === 'namespace' && resource.name === 'a');
  },
};
const failing: PermissionChecker = { allowed: () => Promise.reject(new Error('permissions service down')) };

describe('subject filters', () => {
  it.each([
    ['events.>', 'events.build.build.finished', true],
    ['events.build.>', 'events.build.build.finished', true],
    ['events.build.>', 'events.build', false],
    ['events.*.job.state', 'events.execution.job.state', true],
    ['events.*.job.state', 'events.execution.job.state.x', false],
    ['events.execution.job.state', 'events.execution.job.state', true],
    ['events.execution.job', 'events.execution.job.state', false],
  ])('%s matches %s: %s', (pattern, subject, expected) => {
    expect(subjectMatches(pattern, subject)).toBe(expected);
  });

  it('parses comma-separated patterns, defaulting to every event', () => {
    expect(parseSubjectFilter(undefined)).toEqual(['events.>']);
    expect(parseSubjectFilter('')).toEqual(['events.>']);
    expect(parseSubjectFilter('events.build.>, events.execution.job.*')).toEqual(['events.build.>', 'events.execution.job.*']);
    for (const bad of ['build.>', 'events', 'events.', 'events.>.x', 'events.a b', 'events.a,,events.b', 'x'.repeat(300)]) {
      expect(() => parseSubjectFilter(bad)).toThrow(/^subjects/);
    }
    expect(() => parseSubjectFilter(Array(40).fill('events.>').join(','))).toThrow(/at most/);
  });

  it('reads ECR resources from the envelope', () => {
    expect(ecrResource('repository:a/b')).toEqual({ type: 'repository', name: 'a/b' });
    expect(ecrResource('namespace:a')).toEqual({ type: 'namespace', name: 'a' });
    for (const other of ['namespace:a/b', 'repository:a', 'job:1', '', null, 'repository:']) expect(ecrResource(other)).toBeNull();
  });
});

describe('read rules', () => {
  const read = (subject: string, event: Record<string, unknown>, who: Identity, p = perms) => mayRead(subject, event, who, p);

  it('admins read everything, unknown subjects nobody else', async () => {
    expect(await read('events.new.thing.happened', { owner: 'alice' }, admin)).toBe(true);
    expect(await read('events.new.thing.happened', { owner: 'alice' }, alice)).toBe(false);
  });

  it('owned resources: login or user id of the owner', async () => {
    expect(await read('events.execution.job.state', { ownerId: 'id-alice' }, alice)).toBe(true);
    expect(await read('events.execution.job.state', { ownerId: 'id-alice' }, bob)).toBe(false);
    expect(await read('events.execution.pipeline.finished', { ownerId: null }, ANONYMOUS)).toBe(false);
    for (const subject of ['events.source-cache.request.state', 'events.process.process.state']) {
      expect(await read(subject, { owner: 'alice' }, alice)).toBe(true);
      expect(await read(subject, { owner: 'alice' }, bob)).toBe(false);
      expect(await read(subject, { owner: null }, ANONYMOUS)).toBe(false);
    }
  });

  it('builds: ECR by repository READ or owner, Kabuto and process builds by owner', async () => {
    const ecr = { kind: 'ecr', owner: 'carol', resource: 'repository:a/pub' };
    expect(await read('events.build.build.finished', ecr, alice)).toBe(true);
    expect(await read('events.build.build.finished', ecr, bob)).toBe(false);
    expect(await read('events.build.build.finished', ecr, user('carol'))).toBe(true);
    expect(await read('events.build.build.queued', { kind: 'kabuto', owner: 'bob', resource: 'image-build:1' }, bob)).toBe(true);
    expect(await read('events.build.build.queued', { kind: 'kabuto', owner: 'bob', resource: 'image-build:1' }, alice)).toBe(false);
  });

  it('ECR events by READ (public ones to anonymous); deletions to their actor too', async () => {
    expect(await read('events.registry.app.submitted', { resource: 'repository:a/open' }, ANONYMOUS)).toBe(true);
    expect(await read('events.registry.app.submitted', { resource: 'repository:a/pub' }, ANONYMOUS)).toBe(false);
    expect(await read('events.registry.app.submitted', { resource: 'repository:a/pub' }, alice)).toBe(true);
    expect(await read('events.registry.repository.deleted', { resource: 'repository:a/gone', actor: 'bob' }, bob)).toBe(true);
    expect(await read('events.registry.repository.deleted', { resource: 'repository:a/gone', actor: 'bob' }, alice)).toBe(false);
  });

  it('account events to the user concerned; grant changes to actor, grantee, group members and READ_ACP', async () => {
    expect(await read('events.permissions.token.revoked', { login: 'bob' }, bob)).toBe(true);
    expect(await read('events.permissions.token.revoked', { login: 'bob' }, alice)).toBe(false);
    expect(await read('events.permissions.user.registered', { login: 'bob' }, ANONYMOUS)).toBe(false);
    const grant = (g: Record<string, unknown>) => ({ resource: 'repository:z/r', actor: 'root', ...g });
    expect(await read('events.permissions.grant.changed', grant({ granteeType: 'USER', grantee: 'bob' }), bob)).toBe(true);
    expect(await read('events.permissions.grant.changed', grant({ granteeType: 'GROUP', grantee: 'devs' }), alice)).toBe(true);
    expect(await read('events.permissions.grant.changed', grant({ granteeType: 'GROUP', grantee: 'devs' }), bob)).toBe(false);
    expect(await read('events.permissions.grant.changed', { resource: 'namespace:a', actor: 'root', granteeType: 'USER', grantee: 'x' }, alice)).toBe(true);
  });

  it('refuses when the permissions service does not answer', async () => {
    expect(await read('events.registry.app.submitted', { resource: 'repository:a/open' }, alice, failing)).toBe(false);
  });

  it('has a rule for every event subject in the catalog', async () => {
    const { SUBJECTS } = await import('@dockyard/contracts');
    const events = Object.entries(SUBJECTS).filter(([, info]) => info.kind === 'event').map(([s]) => s);
    expect(events.filter((s) => !EVENT_RULES[s])).toEqual([]);
  });
});
