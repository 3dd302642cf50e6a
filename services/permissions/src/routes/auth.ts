import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { badRequest, forbidden, hasControlCharacter, routeSchema, unauthorized, type Identity, type OpenApiDocument } from '@dockyard/kit';
import { toTokenView, toUserView, type Accounts, type TokenRow, type UserFlags } from '../domain/accounts.js';
import type { Groups } from '../domain/groups.js';

interface Deps {
  doc: OpenApiDocument;
  accounts: Accounts;
  groups: Groups;
  onTokenRevoked: (token: TokenRow, by: string) => Promise<void>;
}

type Caller = Identity & { id: string; login: string };

function signedIn(request: FastifyRequest): Caller {
  if (!request.identity.id) throw unauthorized('Authentication required');
  return request.identity as Caller;
}

function admin(request: FastifyRequest): Caller {
  const caller = signedIn(request);
  if (!caller.admin) throw forbidden('Admin rights required');
  return caller;
}

/** The user a token operation is for: the caller, or (admins only) the user named by `login`. */
async function subjectOf(request: FastifyRequest, accounts: Accounts, login: string | undefined): Promise<string> {
  const caller = signedIn(request);
  if (!login || login === caller.login) return caller.id;
  if (!caller.admin) throw forbidden("Only an admin may act on another user's tokens");
  return (await accounts.findUser(login)).id;
}

/** Token, user and group administration under /auth. */
export const authRoutes: FastifyPluginAsync<Deps> = async (app, { doc, accounts, groups, onTokenRevoked }) => {
  app.route({
    ...routeSchema(doc, 'whoami'),
    handler: async (request) => signedIn(request),
  });

  app.route({
    ...routeSchema(doc, 'listTokens'),
    handler: async (request) => {
      const userId = await subjectOf(request, accounts, (request.query as { login?: string }).login);
      return (await accounts.listTokens(userId)).map(toTokenView);
    },
  });

  app.route({
    ...routeSchema(doc, 'createToken'),
    handler: async (request, reply) => {
      const body = request.body as { name: string; expiresAt?: string | null; login?: string };
      // NUL cannot be stored (PostgreSQL text: a 500 before this check); control characters forge listings.
      if (hasControlCharacter(body.name)) throw badRequest('name: must not contain control characters');
      const userId = await subjectOf(request, accounts, body.login);
      const { token, row } = await accounts.createToken(userId, body.name, body.expiresAt ? new Date(body.expiresAt) : null);
      return reply.status(201).send({ ...toTokenView(row), token });
    },
  });

  app.route({
    ...routeSchema(doc, 'revokeToken'),
    handler: async (request) => {
      const caller = signedIn(request);
      const row = await accounts.revokeToken(caller, (request.params as { id: string }).id);
      await onTokenRevoked(row, caller.login);
      return toTokenView(row);
    },
  });

  app.route({
    ...routeSchema(doc, 'listUsers'),
    handler: async (request) => {
      admin(request);
      return (await accounts.listUsers(request.query as { approved?: boolean })).map(toUserView);
    },
  });

  app.route({
    ...routeSchema(doc, 'createUser'),
    handler: async (request, reply) => {
      admin(request);
      const { login, ...flags } = request.body as UserFlags & { login: string };
      return reply.status(201).send(toUserView(await accounts.createUser(login, flags)));
    },
  });

  app.route({
    ...routeSchema(doc, 'getUser'),
    handler: async (request) => {
      const caller = signedIn(request);
      const { login } = request.params as { login: string };
      if (!caller.admin && caller.login !== login) throw forbidden('Admin rights required');
      return toUserView(await accounts.findUser(login));
    },
  });

  app.route({
    ...routeSchema(doc, 'updateUser'),
    handler: async (request) => {
      const caller = signedIn(request);
      const { login } = request.params as { login: string };
      const body = request.body as UserFlags;
      const privileged = body.admin !== undefined || body.approved !== undefined || body.disabled !== undefined;
      if (!caller.admin && (caller.login !== login || privileged)) throw forbidden('Admin rights required');
      await accounts.findUser(login);
      return toUserView(await accounts.upsertUser(login, body));
    },
  });

  app.route({
    ...routeSchema(doc, 'deleteUser'),
    handler: async (request) => {
      admin(request);
      await accounts.deleteUser((request.params as { login: string }).login);
      return { deleted: 1 };
    },
  });

  app.route({
    ...routeSchema(doc, 'listGroups'),
    handler: async (request) => {
      const caller = signedIn(request);
      return groups.list(caller.admin ? undefined : caller.login);
    },
  });

  app.route({
    ...routeSchema(doc, 'createGroup'),
    handler: async (request, reply) => {
      admin(request);
      return reply.status(201).send(await groups.create((request.body as { name: string }).name));
    },
  });

  app.route({
    ...routeSchema(doc, 'getGroup'),
    handler: async (request) => {
      const caller = signedIn(request);
      const group = await groups.get((request.params as { group: string }).group);
      if (!caller.admin && !group.members.includes(caller.login)) throw forbidden('Admin rights required');
      return group;
    },
  });

  app.route({
    ...routeSchema(doc, 'deleteGroup'),
    handler: async (request) => {
      admin(request);
      return { deleted: await groups.delete((request.params as { group: string }).group) };
    },
  });

  app.route({
    ...routeSchema(doc, 'addGroupMember'),
    handler: async (request) => {
      admin(request);
      const { group, login } = request.params as { group: string; login: string };
      return groups.addMember(group, login);
    },
  });

  app.route({
    ...routeSchema(doc, 'removeGroupMember'),
    handler: async (request) => {
      admin(request);
      const { group, login } = request.params as { group: string; login: string };
      return groups.removeMember(group, login);
    },
  });
};
