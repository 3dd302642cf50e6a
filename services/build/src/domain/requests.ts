import { badRequest } from '@dockyard/kit';
import type { BuildRequestRequest } from '@dockyard/contracts';
import type { Builds } from './builds.js';
import { safeRelativePath } from './context.js';

// A docker image reference with a tag: [host[:port]/]path[:tag] in lower case.
const REFERENCE = /^([a-z0-9.-]+(:[0-9]+)?\/)?[a-z0-9]+([._-]+[a-z0-9]+)*(\/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/;
const PLATFORM = /^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/;

/** Validates a build.request (contracts #3) and queues it; the context is already in the object store. */
export async function requestBuild(builds: Builds, req: BuildRequestRequest) {
  if (!req || typeof req.contextObject !== 'string' || !req.contextObject) throw badRequest('contextObject is required');
  if (typeof req.owner !== 'string' || !req.owner) throw badRequest('owner is required');
  const dockerfile = safeRelativePath(req.dockerfile || 'Dockerfile', 'dockerfile');
  const tags = req.tags ?? [];
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string' || !REFERENCE.test(t))) throw badRequest('tags must be image references');
  if (req.platform && !PLATFORM.test(req.platform)) throw badRequest('platform must be os/arch');
  const buildArgs = req.buildArgs ?? {};
  if (typeof buildArgs !== 'object' || Object.values(buildArgs).some((v) => typeof v !== 'string')) throw badRequest('buildArgs must map names to strings');
  return builds.create({
    kind: 'process',
    owner: req.owner,
    nocache: req.nocache === true,
    push: req.push === true,
    spec: {
      context: { source: 'object', name: req.contextObject },
      dockerfile,
      buildArgs,
      platforms: req.platform ? [req.platform] : [],
      repository: null,
      tag: null,
      tags: tags.length ? tags : [],
      label: req.label ?? null,
    },
  });
}
