import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { FastifyPluginAsync } from 'fastify';
import type { MultipartFile, MultipartValue } from '@fastify/multipart';
import { HttpError, assertGitUrlAllowed, badRequest, notFound, routeSchema, type GitPolicy, type OpenApiDocument } from '@dockyard/kit';
import type { Build, Image } from '../generated/prisma/client.js';
import type { Builds } from '../domain/builds.js';
import { packEntries, scanContext, type ContextLimits } from '../domain/context.js';
import { BuildFailure } from '../domain/types.js';
import { pathComponent, signedIn } from './common.js';

interface Deps {
  doc: OpenApiDocument;
  builds: Builds;
  policy: GitPolicy;
  registry: string;
  limits: ContextLimits;
  tmpDir: string;
}

interface ImageForm {
  name?: string;
  dockerfile?: string;
  repo_url?: string;
  nocache?: boolean | string;
}

// One docker repository path component.
const IMAGE_NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const FIELDS = new Set(['name', 'dockerfile', 'repo_url', 'nocache']);

/** An attachment's file name: one plain name placed beside the Dockerfile, nothing that leaves the context. */
export function attachmentName(raw: string | undefined): string {
  const name = raw ?? '';
  if (!name || name === '.' || name === '..' || /[/\\\0]/.test(name)) throw badRequest(`Attachment name "${name}" escapes the build context (plain file names only)`);
  if (name === 'Dockerfile') throw badRequest('Attachment name "Dockerfile" is reserved for the dockerfile field');
  return name;
}

const date = (d: Date) => d.toISOString().slice(0, 10);
const view = (i: Image) => ({ id: i.id, name: i.name, dockerfile: i.dockerfile, creation_date: date(i.createdAt) });

/** Kabuto images: POST /image, GET /image/build/<id>, GET /image/<id>, GET /image. */
export const imageRoutes: FastifyPluginAsync<Deps> = async (app, { doc, builds, policy, registry, limits, tmpDir }) => {
  const prisma = builds.prisma;
  await mkdir(tmpDir, { recursive: true });

  app.route({
    ...routeSchema(doc, 'createImage'),
    handler: async (request) => {
      const caller = signedIn(request);
      const staging = await mkdtemp(path.join(tmpDir, 'image-'));
      try {
        let form: ImageForm;
        let attachments = 0;
        if (request.isMultipart()) {
          form = {};
          let bytes = 0;
          for await (const part of request.parts()) {
            if (part.type === 'file') {
              const file = part as MultipartFile;
              if (file.fieldname !== 'attachments') {
                file.file.resume();
                throw badRequest(`Field ${file.fieldname} not supported`);
              }
              const name = attachmentName(file.filename);
              await pipeline(file.file, createWriteStream(path.join(staging, name), { flags: 'wx' })).catch((err: NodeJS.ErrnoException) => {
                if (err.code === 'EEXIST') throw badRequest(`Attachment "${name}" was given twice`);
                throw err;
              });
              if (file.file.truncated) throw new HttpError(413, `Attachment "${name}" is larger than ${limits.maxBytes} bytes`);
              bytes += file.file.bytesRead;
              if (bytes > limits.maxBytes) throw new HttpError(413, `The build context is larger than ${limits.maxBytes} bytes`);
              if (++attachments >= limits.maxFiles) throw new HttpError(413, `The build context has more than ${limits.maxFiles} files`);
            } else {
              const field = part as MultipartValue<string>;
              if (!FIELDS.has(field.fieldname)) throw badRequest(`Field ${field.fieldname} not supported`);
              (form as Record<string, unknown>)[field.fieldname] = field.value;
            }
          }
        } else {
          form = (request.body ?? {}) as ImageForm;
        }
        const name = form.name ?? '';
        if (!name) throw badRequest('Field name is required');
        if (!IMAGE_NAME.test(name) || name.length > 128) throw badRequest('name must be lower-case letters and digits, separated by ".", "_", "__" or "-" (a docker repository name)');
        const nocache = form.nocache === true || form.nocache === 'true' || form.nocache === '1';
        if (typeof form.nocache === 'string' && !['true', 'false', '1', '0', ''].includes(form.nocache)) throw badRequest('nocache must be boolean');
        const repository = `${registry}/kabuto/${pathComponent(caller.login)}/${name}`;
        let build: Build;
        if (form.repo_url) {
          // Kabuto's rule: repo_url wins over dockerfile.
          await assertGitUrlAllowed(form.repo_url, policy);
          build = await builds.create({
            kind: 'kabuto',
            owner: caller.login,
            name,
            nocache,
            push: true,
            spec: {
              context: { source: 'git', url: form.repo_url, directory: '.', submodules: true },
              dockerfile: 'Dockerfile',
              buildArgs: {},
              platforms: [],
              repository,
              tag: 'latest',
              tags: [],
              dockerfileText: null,
            },
          });
        } else if (typeof form.dockerfile === 'string' && form.dockerfile.length) {
          await writeFile(path.join(staging, 'Dockerfile'), form.dockerfile);
          let entries;
          try {
            entries = await scanContext(staging, staging, limits);
          } catch (err) {
            if (err instanceof BuildFailure) throw new HttpError(413, err.message);
            throw err;
          }
          const key = `contexts/${randomUUID()}.tar`;
          await app.blobs.put(key, packEntries(entries), { maxBytes: limits.maxBytes + (entries.length + 2) * 1024 });
          build = await builds.create({
            kind: 'kabuto',
            owner: caller.login,
            name,
            nocache,
            push: true,
            spec: { context: { source: 'blob', key }, dockerfile: 'Dockerfile', buildArgs: {}, platforms: [], repository, tag: 'latest', tags: [], dockerfileText: form.dockerfile },
          });
        } else {
          throw badRequest('Must provide a dockerfile or a repository');
        }
        return { status: 'Your image is being built', build_id: build.id };
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    },
  });

  app.route({
    ...routeSchema(doc, 'getImageBuild'),
    handler: async (request) => {
      const caller = signedIn(request);
      const { build_id: id } = request.params as { build_id: string };
      const build = /^[0-9a-f-]{36}$/.test(id) ? await prisma.build.findUnique({ where: { id } }) : null;
      if (!build || build.kind !== 'kabuto' || (build.owner !== caller.login && !caller.admin)) throw notFound(`Build ${id} not found`);
      if (build.state === 'QUEUED' || build.state === 'BUILDING') return { state: 'PENDING' };
      const output = (await builds.logLines(build.id)).map((l) => l.line);
      if (build.state === 'SUCCESS') return { state: 'SUCCESS', id: build.imageId, output };
      return { state: build.errorSource === 'build' ? 'FAILED' : 'FAILURE', error: build.error ?? (build.state === 'ABORTED' ? 'Aborted' : 'Build failed'), output };
    },
  });

  app.route({
    ...routeSchema(doc, 'getImage'),
    handler: async (request) => {
      const caller = signedIn(request);
      const { image_id: id } = request.params as { image_id: number };
      const image = await prisma.image.findUnique({ where: { id } });
      if (!image || (image.owner !== caller.login && !caller.admin)) throw notFound(`could not find image with id ${id}`);
      return { [image.id]: view(image) };
    },
  });

  app.route({
    ...routeSchema(doc, 'listImages'),
    handler: async (request) => {
      const caller = signedIn(request);
      const images = await prisma.image.findMany({ where: caller.admin ? {} : { owner: caller.login }, orderBy: { id: 'asc' } });
      return Object.fromEntries(images.map((i) => [i.id, view(i)]));
    },
  });
};
