import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  HttpError,
  assertGitUrlAllowed,
  badRequest,
  conflict,
  forbidden,
  notFound,
  request as natsRequest,
  routeSchema,
  type GitPolicy,
  type OpenApiDocument,
  type PermissionsClient,
} from '@dockyard/kit';
import type { RegistryAppGetReply, RegistryAppGetRequest } from '@dockyard/contracts';
import type { Build } from '../generated/prisma/client.js';
import { platformsOf, type Builds } from '../domain/builds.js';
import { safeRelativePath } from '../domain/context.js';
import { TERMINAL } from '../domain/types.js';

interface Deps {
  doc: OpenApiDocument;
  builds: Builds;
  permissions: PermissionsClient;
  policy: GitPolicy;
  registry: string;
}

interface Params {
  namespace: string;
  repository: string;
  version: string;
}

const PLATFORM = /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/;
const BUILD_ARG = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A build in the shape ECR's build server (Jenkins) answered, plus Dockyard's fields. */
export function ecrView(build: Build) {
  const end = build.finishedAt?.getTime();
  const start = (build.startedAt ?? build.createdAt).getTime();
  const done = TERMINAL.has(build.state);
  return {
    number: build.number ?? 0,
    queueId: build.queueId,
    building: !done,
    result: done ? build.state : null,
    timestamp: start,
    duration: done && end ? Math.max(0, end - start) : 0,
    url: `/builds/${build.namespace}/${build.name}/${build.version}/logs`,
    image: build.image,
    digest: build.digest,
    platforms: platformsOf(build).map((p) => ({
      platform: p.platform,
      building: !TERMINAL.has(p.state) && !done,
      result: TERMINAL.has(p.state) ? p.state : done ? build.state : null,
      digest: p.digest,
      error: p.error,
    })),
  };
}

/** ECR builds: POST/GET/DELETE /builds/{ns}/{repo}/{ver} and its log. */
export const ecrRoutes: FastifyPluginAsync<Deps> = async (app, { doc, builds, permissions, policy, registry }) => {
  const prisma = builds.prisma;
  const repoOf = (p: Params) => ({ type: 'repository' as const, name: `${p.namespace}/${p.repository}` });
  const latest = async (p: Params) => {
    const build = await prisma.build.findFirst({ where: { kind: 'ecr', namespace: p.namespace, name: p.repository, version: p.version }, orderBy: { number: 'desc' } });
    if (!build) throw notFound(`No build found for ${p.namespace}/${p.repository}:${p.version}`);
    return build;
  };

  app.route({
    ...routeSchema(doc, 'createBuild'),
    handler: async (request: FastifyRequest) => {
      const p = request.params as Params;
      const { skip_image_push: skipPush } = request.query as { skip_image_push?: boolean };
      const identity = request.identity;
      if (identity.login && !identity.approved && !identity.admin) throw forbidden('Your account is not approved to perform this action.');
      await permissions.require(identity, 'FULL_CONTROL', repoOf(p));
      let reply: RegistryAppGetReply;
      try {
        reply = await natsRequest<RegistryAppGetRequest, RegistryAppGetReply>(
          app.nats,
          app.subjects.of('registry.app.get'),
          { namespace: p.namespace, name: p.repository, version: p.version },
          10_000,
        );
      } catch (err) {
        request.log.error({ err }, 'registry.app.get failed');
        throw new HttpError(503, 'Service registry is unavailable');
      }
      const ecrApp = reply.app;
      if (!ecrApp) throw notFound(`App ${p.namespace}/${p.repository}:${p.version} not found`);
      const source = ecrApp.source ?? ({} as typeof ecrApp.source);
      if (!source.url) throw badRequest(`App ${p.namespace}/${p.repository}:${p.version} has no source url to build from`);
      await assertGitUrlAllowed(source.url, policy);
      const directory = safeRelativePath(source.directory || '.', 'source.directory');
      const dockerfile = safeRelativePath(source.dockerfile || 'Dockerfile', 'source.dockerfile');
      const buildArgs = source.build_args ?? {};
      for (const [k, v] of Object.entries(buildArgs)) {
        if (!BUILD_ARG.test(k) || typeof v !== 'string') throw badRequest(`source.build_args: "${k}" must be a name with a string value`);
      }
      const platforms = [...new Set(source.architectures?.length ? source.architectures : ['linux/amd64'])];
      const bad = platforms.find((x) => !PLATFORM.test(x));
      if (bad) throw badRequest(`source.architectures: "${bad}" is not a platform (os/arch)`);
      const build = await builds.create({
        kind: 'ecr',
        owner: identity.login,
        nocache: false,
        push: skipPush !== true,
        ecr: { namespace: p.namespace, name: p.repository, version: p.version },
        spec: {
          context: { source: 'git', url: source.url, commit: ecrApp.commit || null, branch: source.branch ?? null, tag: source.tag ?? null, directory, submodules: true },
          dockerfile,
          buildArgs: buildArgs as Record<string, string>,
          platforms,
          repository: `${registry}/${p.namespace}/${p.repository}`,
          tag: p.version,
          tags: [],
        },
      });
      return { build_number: build.number };
    },
  });

  app.route({
    ...routeSchema(doc, 'getBuild'),
    handler: async (request) => {
      const p = request.params as Params;
      await permissions.require(request.identity, 'READ', repoOf(p));
      return ecrView(await latest(p));
    },
  });

  app.route({
    ...routeSchema(doc, 'abortBuild'),
    handler: async (request) => {
      const p = request.params as Params;
      await permissions.require(request.identity, 'FULL_CONTROL', repoOf(p));
      const build = await latest(p);
      if (TERMINAL.has(build.state)) throw conflict(`Build ${build.number} of ${p.namespace}/${p.repository}:${p.version} has already finished (${build.state})`);
      await builds.abort(build);
      return ecrView(await builds.waitEnded(build.id, 15_000));
    },
  });

  app.route({
    ...routeSchema(doc, 'getBuildLogs'),
    handler: async (request, reply) => {
      const p = request.params as Params;
      const { follow } = request.query as { follow?: boolean };
      await permissions.require(request.identity, 'READ', repoOf(p));
      const build = await latest(p);
      const several = platformsOf(build).length > 1;
      const format = (l: { platform: string | null; line: string }) => `${several && l.platform ? `[${l.platform}] ` : ''}${l.line}\n`;
      reply.type('text/plain; charset=utf-8');
      if (!follow || TERMINAL.has(build.state)) return (await builds.logLines(build.id)).map(format).join('');
      // Follow: stream stored lines as they are appended, until the build has ended and all are out.
      let last = 0n;
      let stopped = false;
      request.raw.on('close', () => (stopped = true));
      const lines = async function* () {
        for (;;) {
          const batch = await builds.logLines(build.id, last);
          for (const l of batch) {
            last = l.seq;
            yield format(l);
          }
          if (stopped) return;
          if (!batch.length) {
            const { state } = await prisma.build.findUniqueOrThrow({ where: { id: build.id }, select: { state: true } });
            if (TERMINAL.has(state)) {
              // Lines flushed just before the end.
              for (const l of await builds.logLines(build.id, last)) yield format(l);
              return;
            }
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      };
      return reply.send(Readable.from(lines()));
    },
  });
};
