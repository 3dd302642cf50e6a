import type { FastifyPluginAsync } from 'fastify';
import type Docker from 'dockerode';
import { notFound, routeSchema, unauthorized, type OpenApiDocument } from '@dockyard/kit';

interface Deps {
  doc: OpenApiDocument;
  docker: Docker;
  baseImages: Record<string, string>;
}

/** Base images: the configured names, each downloadable as a `docker save` tar. */
export const imageRoutes: FastifyPluginAsync<Deps> = async (app, { doc, docker, baseImages }) => {
  app.route({
    ...routeSchema(doc, 'listBaseImages'),
    handler: async (request) => {
      if (!request.identity?.id) throw unauthorized('Authentication required');
      return Object.keys(baseImages).map((name) => ({ name, download_endpoint: `/api/image/download/${name}` }));
    },
  });
  app.route({
    ...routeSchema(doc, 'downloadBaseImage'),
    handler: async (request, reply) => {
      if (!request.identity?.id) throw unauthorized('Authentication required');
      const { image_name: name } = request.params as { image_name: string };
      const reference = Object.hasOwn(baseImages, name) ? baseImages[name] : undefined;
      if (!reference) throw notFound(`Image ${name} not found`);
      try {
        await docker.getImage(reference).inspect();
      } catch {
        throw notFound(`Image ${name} (${reference}) is not available on the engine`);
      }
      const tar = await docker.getImage(reference).get();
      return reply.type('application/x-tar').header('content-disposition', `attachment; filename="${name}.tar"`).send(tar);
    },
  });
};
