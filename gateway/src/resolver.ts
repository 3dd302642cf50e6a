import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Credential, IdentityResolveReply } from '@dockyard/contracts';
import { ANONYMOUS, unauthorized, type Identity } from '@dockyard/kit';

/** A resolved caller with the internal token forwarded on its behalf. */
export interface Resolved {
  identity: Identity;
  /** Signed internal identity token, reused until shortly before it expires. */
  token: string;
  tokenExpiresAt: number;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The cache key of a credential; token keys are the sha256 the permissions service stores. */
export function credentialKey(c: Credential): string {
  switch (c.scheme) {
    case 'token':
      return `token:${sha256(c.token)}`;
    case 'basic':
      return `basic:${sha256(`${c.login}\0${c.password}`)}`;
    case 'session':
      return `session:${sha256(c.session)}`;
    case 'jwt':
      return `jwt:${c.subject}`;
  }
}

export interface ResolverOptions {
  ttlMs: number;
  /** Asks the permissions service (identity.resolve over NATS). */
  lookup: (credential: Credential) => Promise<IdentityResolveReply>;
  sign: (identity: Identity) => string;
  /** Lifetime of a signed internal token; it is re-signed at half-life. */
  tokenTtlMs: number;
}

/**
 * Resolves credentials once and keeps the answer for `ttlMs`, so a burst of calls with one token
 * costs one NATS round trip; concurrent misses for the same credential share one lookup.
 * Failures (unknown token, wrong password) are cached too, briefly, to blunt guessing floods.
 */
export class CredentialResolver {
  private readonly cache: LRUCache<string, { identity: Identity } | { reason: string }>;
  private readonly pending = new Map<string, Promise<{ identity: Identity } | { reason: string }>>();
  private readonly signed = new WeakMap<Identity, Resolved>();
  private anonymous: Resolved | null = null;
  private readonly keys = new LRUCache<string, string>({ max: 10_000 });
  // Basic credentials whose password may be an API token (`docker login`), by sha256 of the
  // password: a revoked token must drop them too, not only its `token:` entry.
  private readonly basicByPassword = new LRUCache<string, Set<string>>({ max: 10_000 });

  constructor(private readonly opts: ResolverOptions) {
    this.cache = new LRUCache({ max: 50_000, ttl: Math.max(1, opts.ttlMs), ttlAutopurge: false });
  }

  /** Drops a credential. */
  forget(key: string): void {
    this.cache.delete(key);
  }

  /** A token was revoked (`tokenHash` = sha256 of its secret): drop it, and Basic logins that used it as password. */
  forgetToken(tokenHash: string): void {
    this.cache.delete(`token:${tokenHash}`);
    for (const key of this.basicByPassword.get(tokenHash) ?? []) this.cache.delete(key);
    this.basicByPassword.delete(tokenHash);
  }

  clear(): void {
    this.cache.clear();
  }

  anonymousIdentity(): Resolved {
    if (!this.anonymous || this.anonymous.tokenExpiresAt < Date.now()) this.anonymous = this.withToken(ANONYMOUS);
    return this.anonymous;
  }

  /** A cache hit answers synchronously (no promise, no microtask); a miss asks the permissions service. */
  resolve(credential: Credential): Resolved | Promise<Resolved> {
    const key = this.keyOf(credential);
    const entry = this.opts.ttlMs > 0 ? this.cache.get(key) : undefined;
    return entry ? this.answer(entry) : this.miss(key, credential);
  }

  private async miss(key: string, credential: Credential): Promise<Resolved> {
    let inflight = this.pending.get(key);
    if (!inflight) {
      inflight = this.lookup(credential).finally(() => this.pending.delete(key));
      this.pending.set(key, inflight);
    }
    const entry = await inflight;
    if (this.opts.ttlMs > 0) {
      this.cache.set(key, entry, 'identity' in entry ? undefined : { ttl: Math.min(this.opts.ttlMs, 1000) });
      if (credential.scheme === 'basic' && 'identity' in entry) {
        const passwordHash = sha256(credential.password);
        const keys = this.basicByPassword.get(passwordHash) ?? new Set<string>();
        this.basicByPassword.set(passwordHash, keys.add(key));
      }
    }
    return this.answer(entry);
  }

  private answer(entry: { identity: Identity } | { reason: string }): Resolved {
    if (!('identity' in entry)) throw unauthorized(entry.reason);
    return this.tokenFor(entry.identity);
  }

  // Hashing a credential costs more than the rest of a cache hit: remember the keys of recent ones.
  private keyOf(credential: Credential): string {
    const raw = credential.scheme === 'token' ? credential.token : credential.scheme === 'session' ? credential.session : null;
    if (raw === null) return credentialKey(credential);
    const memo = `${credential.scheme}\0${raw}`;
    let key = this.keys.get(memo);
    if (key === undefined) this.keys.set(memo, (key = credentialKey(credential)));
    return key;
  }

  private async lookup(credential: Credential): Promise<{ identity: Identity } | { reason: string }> {
    const reply = await this.opts.lookup(credential);
    return reply.identity ? { identity: Object.freeze({ ...reply.identity }) } : { reason: reply.reason };
  }

  private tokenFor(identity: Identity): Resolved {
    const cached = this.signed.get(identity);
    if (cached && cached.tokenExpiresAt > Date.now()) return cached;
    const fresh = this.withToken(identity);
    this.signed.set(identity, fresh);
    return fresh;
  }

  private withToken(identity: Identity): Resolved {
    return { identity, token: this.opts.sign(identity), tokenExpiresAt: Date.now() + this.opts.tokenTtlMs / 2 };
  }
}
