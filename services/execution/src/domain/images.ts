import { badRequest, HttpError, request, type Identity, type NatsConnection, type Subjects } from '@dockyard/kit';
import type { BuildImageGetReply, BuildImageGetRequest } from '@dockyard/contracts';

/** Turns `a/*` patterns into a matcher over image references. */
function matcher(patterns: string): (ref: string) => boolean {
  const res = patterns
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^@\\s]*')}$`));
  return (ref) => res.some((r) => r.test(ref));
}

const REFERENCE = /^[a-z0-9][a-z0-9._:/-]*(@sha256:[a-f0-9]{64})?$/;

/**
 * What a job's `image_id` names: a Kabuto image id (digits), resolved through the build service
 * (`build.image.get`) and readable by its owner (or an admin) once built; or an image reference
 * matching DOCKYARD_EXECUTION_IMAGES, which anyone may run.
 */
export class ImageResolver {
  private readonly allowed: (ref: string) => boolean;
  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    patterns: string,
  ) {
    this.allowed = matcher(patterns);
  }

  async resolve(imageId: string, identity: Identity): Promise<string> {
    if (/^[0-9]+$/.test(imageId)) {
      let reply: BuildImageGetReply;
      try {
        reply = await request<BuildImageGetRequest, BuildImageGetReply>(this.nc, this.subjects.of('build.image.get'), { id: imageId }, 5000);
      } catch (err) {
        throw new HttpError(503, `Image ${imageId} cannot be looked up now (build service: ${(err as Error).message})`);
      }
      const image = reply.image;
      if (!image || (!identity.admin && image.owner !== identity.login && image.owner !== identity.id)) throw badRequest('Image not found');
      if (image.state !== 'SUCCESS') throw badRequest(`Image ${imageId} is not built (state ${image.state})`);
      return image.reference;
    }
    const ref = imageId.includes(':') || imageId.includes('@') ? imageId : `${imageId}:latest`;
    if (!REFERENCE.test(ref) || !this.allowed(ref)) throw badRequest('Image not found');
    return ref;
  }
}
