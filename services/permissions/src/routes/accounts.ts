import type { FastifyPluginAsync } from 'fastify';
import { parse as parseCookie, serialize as serializeCookie } from 'cookie';
import { routeSchema, type OpenApiDocument } from '@dockyard/kit';
import type { Accounts } from '../domain/accounts.js';

/** The cookie Kabuto clients keep after `POST /login`; the gateway resolves it on every call. */
export const SESSION_COOKIE = 'session';

interface Deps {
  doc: OpenApiDocument;
  accounts: Accounts;
  onRegistered: (user: { userId: string; login: string }) => Promise<void>;
  onConfirmed: (user: { userId: string; login: string }) => Promise<void>;
}

type Form = { login?: string; password?: string; email?: string };

/** Kabuto's account endpoints: register, confirm, login (session cookie), logout. */
export const accountRoutes: FastifyPluginAsync<Deps> = async (app, { doc, accounts, onRegistered, onConfirmed }) => {
  app.route({
    ...routeSchema(doc, 'registerAccount'),
    handler: async (request) => {
      const { userId, login, confirmationToken } = await accounts.register(request.body as Form);
      await onRegistered({ userId, login });
      return { status: 'success', token: confirmationToken };
    },
  });

  app.route({
    ...routeSchema(doc, 'confirmAccount'),
    handler: async (request, reply) => {
      const { login, token } = request.params as { login: string; token: string };
      let userId: string;
      try {
        userId = (await accounts.confirm(login, token)).id;
      } catch (err) {
        // Kabuto clients read `registration`; everyone else reads `error`.
        return reply.status(404).send({ error: (err as Error).message, registration: (err as Error).message });
      }
      await onConfirmed({ userId, login });
      return { registration: 'success' };
    },
  });

  app.route({
    ...routeSchema(doc, 'login'),
    handler: async (request, reply) => {
      const body = (request.body ?? {}) as Form;
      const { session, expiresAt } = await accounts.login(body.login, body.password);
      reply.header('set-cookie', serializeCookie(SESSION_COOKIE, session, { httpOnly: true, sameSite: 'lax', path: '/', expires: expiresAt }));
      return { login: 'success' };
    },
  });

  app.route({
    ...routeSchema(doc, 'logout'),
    handler: async (request, reply) => {
      const cookies = parseCookie(request.headers.cookie ?? '');
      await accounts.logout(cookies[SESSION_COOKIE]);
      reply.header('set-cookie', serializeCookie(SESSION_COOKIE, '', { httpOnly: true, sameSite: 'lax', path: '/', expires: new Date(0) }));
      return { logout: 'success' };
    },
  });
};
