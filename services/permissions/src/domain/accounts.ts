import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import type { Credential, ResolvedIdentity } from '@dockyard/contracts';
import { badRequest, conflict, forbidden, notFound, unauthorized } from '@dockyard/kit';
import type { PrismaClient, Token, User } from '../generated/prisma/client.js';
import { hashSecret, newSecret } from './secrets.js';

const LOGIN = /^[A-Za-z0-9._-]{1,64}$/;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

export interface AccountsOptions {
  sessionTtlMs: number;
}

const WITH_GROUPS = { memberships: { include: { group: { select: { name: true } } } } } as const;
export type UserWithGroups = User & { memberships: { group: { name: string } }[] };
export type TokenRow = Token & { user: { login: string } };
export interface UserFlags {
  admin?: boolean;
  approved?: boolean;
  disabled?: boolean;
  email?: string;
  password?: string;
  roles?: string[];
}

/** Password hashing, argon2 by default (injectable so tests can count verifications). */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
}
const argon2: PasswordHasher = { hash: (p) => argon2Hash(p), verify: (h, p) => argon2Verify(h, p) };

/** Users, their passwords, confirmation, sessions and API tokens. */
export class Accounts {
  private readonly decoyHash: Promise<string>;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly opts: AccountsOptions,
    private readonly passwords: PasswordHasher = argon2,
  ) {
    this.decoyHash = passwords.hash(newSecret());
  }

  /** Kabuto's registration: the account exists unconfirmed until its confirmation token comes back. */
  async register(input: { login?: string; password?: string; email?: string }): Promise<{ userId: string; login: string; confirmationToken: string }> {
    const login = input.login?.trim() ?? '';
    if (!login) throw badRequest('login: required');
    if (!LOGIN.test(login)) throw badRequest('login: must be 1-64 letters, digits, ".", "_" or "-"');
    if (!input.password) throw badRequest('password: required');
    if (input.password.length > 1024) throw badRequest('password: at most 1024 characters');
    if (!input.email || !EMAIL.test(input.email) || input.email.length > 256) throw badRequest('email: must be an e-mail address');
    const confirmationToken = newSecret();
    try {
      const user = await this.prisma.user.create({
        data: { login, email: input.email, passwordHash: await this.passwords.hash(input.password), confirmationHash: hashSecret(confirmationToken) },
      });
      return { userId: user.id, login, confirmationToken };
    } catch (err) {
      if ((err as { code?: string }).code === 'P2002') throw conflict(`Login ${login} is already taken`);
      throw err;
    }
  }

  async confirm(login: string, token: string): Promise<User> {
    const user = await this.prisma.user.findUnique({ where: { login } });
    if (!user || !user.confirmationHash || user.confirmationHash !== hashSecret(token)) {
      throw notFound('user or token not found');
    }
    return this.prisma.user.update({ where: { id: user.id }, data: { confirmed: true, confirmationHash: null } });
  }

  /** Checks a password; the same message for an unknown login and a wrong password. */
  async checkPassword(login: string, password: string): Promise<User> {
    const user = await this.prisma.user.findUnique({ where: { login } });
    // An unknown login costs the same argon2 verification as a wrong password, so response
    // times do not tell which logins exist.
    const ok = await this.passwords.verify(user?.passwordHash ?? (await this.decoyHash), password).catch(() => false);
    if (!user?.passwordHash || !ok) throw unauthorized('Wrong login or password');
    if (!user.confirmed) throw forbidden(`Account ${user.login} is not confirmed`);
    if (user.disabled) throw forbidden(`Account ${user.login} is disabled`);
    return user;
  }

  /** Starts a session; the secret goes into the cookie, only its hash is stored. */
  async login(login?: string, password?: string): Promise<{ session: string; user: User; expiresAt: Date }> {
    if (!login) throw badRequest('login: required');
    if (!password) throw badRequest('password: required');
    const user = await this.checkPassword(login, password);
    const session = newSecret();
    const expiresAt = new Date(Date.now() + this.opts.sessionTtlMs);
    await this.prisma.session.create({ data: { userId: user.id, sessionHash: hashSecret(session), expiresAt } });
    return { session, user, expiresAt };
  }

  async logout(session: string | undefined): Promise<void> {
    if (session) await this.prisma.session.deleteMany({ where: { sessionHash: hashSecret(session) } });
  }

  /** Resolves any credential the gateway accepts; null with a reason when it matches no one. */
  async resolve(credential: Credential): Promise<{ identity: ResolvedIdentity } | { identity: null; reason: string }> {
    const include = WITH_GROUPS;
    let user: UserWithGroups | null = null;
    switch (credential.scheme) {
      case 'token': {
        const token = await this.prisma.token.findUnique({ where: { tokenHash: hashSecret(credential.token) }, include: { user: { include } } });
        if (!token || token.revokedAt || (token.expiresAt && token.expiresAt < new Date())) return { identity: null, reason: 'Token not found' };
        user = token.user;
        break;
      }
      case 'session': {
        const session = await this.prisma.session.findUnique({ where: { sessionHash: hashSecret(credential.session) }, include: { user: { include } } });
        if (!session || session.expiresAt < new Date()) return { identity: null, reason: 'Session expired or unknown' };
        user = session.user;
        break;
      }
      case 'basic': {
        // `docker login` stores a login and, as the password, a Dockyard API token: the token
        // says who this is, whatever login accompanies it. Otherwise it is a real password.
        const token = await this.prisma.token.findUnique({ where: { tokenHash: hashSecret(credential.password) }, include: { user: { include } } });
        if (token && !token.revokedAt && !(token.expiresAt && token.expiresAt < new Date())) {
          user = token.user;
          break;
        }
        try {
          const found = await this.checkPassword(credential.login, credential.password);
          user = await this.prisma.user.findUnique({ where: { id: found.id }, include });
        } catch (err) {
          return { identity: null, reason: (err as Error).message };
        }
        break;
      }
      case 'jwt': {
        user = await this.prisma.user.findUnique({ where: { login: credential.subject }, include });
        if (!user) return { identity: null, reason: `Unknown user ${credential.subject}` };
        break;
      }
    }
    if (!user) return { identity: null, reason: 'Unknown user' };
    if (user.disabled) return { identity: null, reason: `Account ${user.login} is disabled` };
    return { identity: toIdentity(user) };
  }

  /** Creates a token; its secret is returned here only, never stored. */
  async createToken(userId: string, name: string, expiresAt?: Date | null): Promise<{ token: string; row: TokenRow }> {
    if (expiresAt && expiresAt.getTime() <= Date.now()) throw badRequest('expiresAt: must be in the future');
    const token = newSecret('dky_');
    const row = await this.prisma.token.create({
      data: { userId, name, prefix: token.slice(0, 8), tokenHash: hashSecret(token), expiresAt: expiresAt ?? null },
      include: { user: { select: { login: true } } },
    });
    return { token, row };
  }

  /** Stores a token whose secret is given (bootstrap admin token, ECR's fixed test tokens). */
  async ensureToken(userId: string, name: string, secret: string): Promise<void> {
    await this.prisma.token.upsert({
      where: { tokenHash: hashSecret(secret) },
      create: { userId, name, prefix: secret.slice(0, 8), tokenHash: hashSecret(secret) },
      update: { userId, revokedAt: null },
    });
  }

  async listTokens(userId: string): Promise<TokenRow[]> {
    return this.prisma.token.findMany({ where: { userId }, include: { user: { select: { login: true } } }, orderBy: { createdAt: 'asc' } });
  }

  /** Revokes a token of the caller's (any token, for an admin). Revoking twice answers the same token. */
  async revokeToken(caller: { id: string; admin: boolean }, tokenId: string): Promise<TokenRow> {
    const token = await this.prisma.token.findUnique({ where: { id: tokenId } });
    if (!token || (token.userId !== caller.id && !caller.admin)) throw notFound('Token not found');
    return this.prisma.token.update({
      where: { id: tokenId },
      data: { revokedAt: token.revokedAt ?? new Date() },
      include: { user: { select: { login: true } } },
    });
  }

  /** Creates or updates a user directly (admin, seeding): confirmed, with the given flags. */
  async upsertUser(login: string, flags: UserFlags): Promise<UserWithGroups> {
    if (!LOGIN.test(login)) throw badRequest('login: must be 1-64 letters, digits, ".", "_" or "-"');
    const passwordHash = flags.password ? await this.passwords.hash(flags.password) : undefined;
    const data = { admin: flags.admin, approved: flags.approved, disabled: flags.disabled, email: flags.email, roles: flags.roles, ...(passwordHash ? { passwordHash } : {}) };
    const user = await this.prisma.user.upsert({ where: { login }, create: { login, confirmed: true, ...data }, update: data, include: WITH_GROUPS });
    // A disabled account loses its sessions at once (its tokens stop resolving through `disabled`).
    if (flags.disabled) await this.prisma.session.deleteMany({ where: { userId: user.id } });
    return user;
  }

  /** Creates a user; 409 when the login exists. */
  async createUser(login: string, flags: UserFlags): Promise<UserWithGroups> {
    if (await this.prisma.user.findUnique({ where: { login } })) throw conflict(`Login ${login} is already taken`);
    return this.upsertUser(login, flags);
  }

  async listUsers(filter: { approved?: boolean } = {}): Promise<UserWithGroups[]> {
    return this.prisma.user.findMany({ where: { approved: filter.approved }, orderBy: { login: 'asc' }, include: WITH_GROUPS });
  }

  async findUser(login: string): Promise<UserWithGroups> {
    const user = await this.prisma.user.findUnique({ where: { login }, include: WITH_GROUPS });
    if (!user) throw notFound(`User ${login} not found`);
    return user;
  }

  /** Deletes a user with their tokens and sessions; the last admin is kept. */
  async deleteUser(login: string): Promise<void> {
    const user = await this.findUser(login);
    if (user.admin && (await this.countAdmins()) <= 1) throw conflict('The last admin cannot be deleted');
    await this.prisma.user.delete({ where: { id: user.id } });
  }

  async countAdmins(): Promise<number> {
    return this.prisma.user.count({ where: { admin: true } });
  }
}

export function toIdentity(user: UserWithGroups): ResolvedIdentity {
  return {
    id: user.id,
    login: user.login,
    admin: user.admin,
    approved: user.approved,
    groups: user.memberships.map((m) => m.group.name).sort(),
    roles: user.roles,
  };
}

/** A user as the admin API shows it. */
export function toUserView(user: UserWithGroups) {
  return {
    id: user.id,
    login: user.login,
    email: user.email,
    admin: user.admin,
    approved: user.approved,
    confirmed: user.confirmed,
    disabled: user.disabled,
    groups: user.memberships.map((m) => m.group.name).sort(),
    createdAt: user.createdAt.toISOString(),
  };
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** A token as listings show it: never the secret. */
export function toTokenView(t: TokenRow) {
  return { id: t.id, name: t.name, login: t.user.login, prefix: t.prefix, createdAt: t.createdAt.toISOString(), expiresAt: iso(t.expiresAt), lastUsedAt: iso(t.lastUsedAt), revokedAt: iso(t.revokedAt) };
}
