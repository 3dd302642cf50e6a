import { assertGitUrlAllowed, badRequest, forbidden, unauthorized, type GitPolicy, type Identity } from '@dockyard/kit';
import { isSafeRelativePath, type NewRequest } from './requests.js';
import { ACTIVE_FLAGS, INACTIVE_FLAGS } from './types.js';

export interface RequestBody {
  repo: string;
  ref: string;
  pkg_managers?: string[];
  packages?: Record<string, { path?: unknown }[]>;
  flags?: string[];
  dependency_replacements?: { name: string; type: string; version: string; new_name?: string }[];
  user?: string;
}

/** Checks a new request the way Cachito does, with its wording; 400 names the offending value. */
export async function validateNewRequest(
  identity: Identity,
  body: RequestBody,
  opts: { enabled: string[]; defaults: string[]; policy: GitPolicy; resolve?: (host: string) => Promise<string[]> },
): Promise<NewRequest> {
  if (!identity.login) throw unauthorized('Authentication required');
  if (typeof body.repo !== 'string' || !body.repo) throw badRequest('The "repo" parameter must be a string');
  if (body.repo.length >= 200) throw badRequest('The "repo" parameter must be less than 200 characters');
  // Never an option to git (`--upload-pack=...`), whatever the URL parser makes of it.
  if (body.repo.startsWith('-') || /\s/.test(body.repo)) throw badRequest('The "repo" parameter must be a git URL');
  if (typeof body.ref !== 'string' || !/^[0-9a-f]{40}$/.test(body.ref)) throw badRequest('The "ref" parameter must be a 40 character hex string');
  await assertGitUrlAllowed(body.repo, opts.policy, opts.resolve);

  const pkgManagers = body.pkg_managers ?? opts.defaults;
  if (!Array.isArray(pkgManagers) || pkgManagers.some((p) => typeof p !== 'string')) throw badRequest('The "pkg_managers" value must be an array of strings');
  const invalid = pkgManagers.filter((p) => !opts.enabled.includes(p));
  if (invalid.length) throw badRequest(`The following package managers are invalid: ${invalid.join(', ')}`);

  const packages = body.packages ?? {};
  if (typeof packages !== 'object' || Array.isArray(packages)) throw badRequest('The "packages" parameter must be an object');
  const notApplying = Object.keys(packages).filter((p) => !pkgManagers.includes(p));
  if (notApplying.length) throw badRequest(`The following package managers in the "packages" object do not apply: ${notApplying.join(', ')}`);
  const packagesSpec: Record<string, { path: string }[]> = {};
  for (const [pm, entries] of Object.entries(packages)) {
    if (!Array.isArray(entries)) throw badRequest(`The value of "packages.${pm}" must be an array`);
    packagesSpec[pm] = entries.map((e) => {
      const keys = Object.keys(e ?? {});
      if (keys.some((k) => k !== 'path')) throw badRequest(`The following keys in "packages.${pm}" are invalid: ${keys.filter((k) => k !== 'path').join(', ')}`);
      if (typeof e.path !== 'string') throw badRequest(`The "path" values in "packages.${pm}" must be strings`);
      const p = e.path.replace(/\/+$/, '') || '.';
      if (!isSafeRelativePath(p)) throw badRequest(`The "path" value "${e.path}" in "packages.${pm}" must be a relative path in the source repository without ".."`);
      return { path: p };
    });
  }

  const flags = body.flags ?? [];
  const badFlags = flags.filter((f) => !(ACTIVE_FLAGS as readonly string[]).includes(f));
  if (badFlags.length) {
    const inactive = badFlags.filter((f) => (INACTIVE_FLAGS as readonly string[]).includes(f));
    throw badRequest(`Invalid/Inactive flag(s): ${badFlags.join(', ')}${inactive.length ? ` (inactive in Dockyard: ${inactive.join(', ')})` : ''}`);
  }

  const replacements = body.dependency_replacements ?? [];
  if (replacements.length) {
    if (!pkgManagers.includes('gomod') || replacements.some((r) => r.type !== 'gomod')) {
      throw badRequest('Dependency replacements are only supported for the gomod package manager');
    }
    for (const r of replacements) {
      if (!r.name || !r.version) throw badRequest('A dependency replacement must have a "name" and a "version"');
    }
  }

  let ownerLogin = identity.login;
  let submittedBy: string | null = null;
  if (body.user !== undefined && body.user !== identity.login) {
    if (!identity.admin && !identity.roles.includes('impersonate')) throw forbidden('You are not authorized to create a request on behalf of another user');
    ownerLogin = body.user;
    submittedBy = identity.login;
  }
  return {
    repo: body.repo,
    ref: body.ref,
    pkgManagers,
    flags: [...new Set(flags)].sort(),
    packagesSpec,
    dependencyReplacements: replacements,
    ownerId: submittedBy ? null : identity.id,
    ownerLogin,
    submittedBy,
  };
}
