import { createHash } from 'node:crypto';
import { PackageURL } from 'packageurl-js';
import { badRequest } from '@dockyard/kit';
import { cachitoTime, uniqueDependencies, type RequestRow } from './requests.js';
import type { Dependency, PackageResult, Pkg } from './types.js';

export const ICM_SPEC =
  'https://raw.githubusercontent.com/containerbuildsystem/atomic-reactor/f4abcfdaf8247a6b074f94fa84f3846f82d781c6/atomic_reactor/schemas/content_manifest.json';

const PURL_TYPES: Record<string, string> = { gomod: 'golang', npm: 'npm', pip: 'pypi', yarn: 'npm', 'git-submodule': 'generic' };

/** The purl of a dependency (packageurl-js does the encoding: `pkg:golang/github.com%2Fx%2Fy@v1`). */
export function dependencyPurl(p: Pkg): string {
  const type = PURL_TYPES[p.type] ?? 'generic';
  if (type === 'npm' && p.name.startsWith('@')) {
    const [scope, name] = p.name.split('/');
    return new PackageURL(type, scope, name, p.version, null, null).toString();
  }
  return new PackageURL(type, null, p.name, p.version, null, null).toString();
}

/** A package found in the repository: a Go module by its path; others by the repository they came from. */
export function packagePurl(p: PackageResult, row: Pick<RequestRow, 'repo' | 'ref'>): string {
  if (p.type === 'gomod') return dependencyPurl(p);
  if (p.type === 'git-submodule') {
    const [url, commit] = [p.version.slice(0, p.version.lastIndexOf('#')), p.version.slice(p.version.lastIndexOf('#') + 1)];
    return new PackageURL('generic', null, p.name, null, { vcs_url: `git+${url}@${commit}` }, null).toString();
  }
  return new PackageURL('generic', null, p.name, p.version, { vcs_url: `git+${row.repo}@${row.ref}` }, p.path && p.path !== '.' ? p.path : null).toString();
}

function assertManifestState(row: RequestRow, what: string): void {
  if (row.state !== 'complete' && row.state !== 'stale') throw badRequest(`${what} are only available for requests in the "complete" or "stale" states`);
}

interface IcmEntry {
  purl: string;
  dependencies: { purl: string }[];
  sources: { purl: string }[];
}

const byPurl = (a: { purl: string }, b: { purl: string }) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0);
const uniq = (purls: string[]) => [...new Set(purls)].sort().map((purl) => ({ purl }));

/**
 * The Image Content Manifest of requests: one entry per package, its runtime dependencies in
 * `dependencies` and every dependency it was built from (dev/build ones too) in `sources`.
 * Several requests merge by purl.
 */
export function contentManifest(rows: RequestRow[]) {
  const entries = new Map<string, IcmEntry>();
  for (const row of rows) {
    if (row.state !== 'complete' && row.state !== 'stale') throw badRequest(`Request ${row.id} is in state ${row.state}, not complete or stale.`);
    for (const p of row.packages as unknown as PackageResult[]) {
      const purl = packagePurl(p, row);
      const e = entries.get(purl) ?? { purl, dependencies: [], sources: [] };
      e.dependencies = uniq([...e.dependencies.map((d) => d.purl), ...p.dependencies.filter((d) => !d.dev).map(dependencyPurl)]);
      e.sources = uniq([...e.sources.map((d) => d.purl), ...p.dependencies.map(dependencyPurl)]);
      entries.set(purl, e);
    }
  }
  return { metadata: { icm_version: 1, icm_spec: ICM_SPEC, image_layer_index: -1 }, image_contents: [...entries.values()].sort(byPurl) };
}

/** One request's content manifest (400 unless complete or stale, in Cachito's words). */
export function requestContentManifest(row: RequestRow) {
  assertManifestState(row, 'Content manifests');
  return contentManifest([row]);
}

/** A stable UUID for a request's SBOM, so the same request always yields the same document. */
function serialFor(row: RequestRow): string {
  const h = createHash('sha256').update(`dockyard-source-cache:${row.id}:${row.repo}:${row.ref}`).digest('hex');
  return `urn:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * A CycloneDX 1.6 JSON SBOM: the repository as the metadata component, every package (with its
 * purl and where it was found) and every dependency as components, and the dependency graph.
 * Built as plain JSON (the members are few and the output must be stable for golden files).
 */
export function sbom(row: RequestRow) {
  assertManifestState(row, 'SBOMs');
  const packages = row.packages as unknown as PackageResult[];
  const rootRef = new PackageURL('generic', null, row.repo.replace(/\.git$/, '').split('/').pop() || 'app', row.ref, { vcs_url: `git+${row.repo}@${row.ref}` }, null).toString();
  const component = (p: Pkg, purl: string, extra: Record<string, unknown> = {}) => ({
    type: 'library',
    'bom-ref': purl,
    name: p.name,
    version: p.version,
    purl,
    ...extra,
    properties: [{ name: 'cachito:pkg_manager', value: p.type }],
  });
  const components = new Map<string, ReturnType<typeof component>>();
  const graph: { ref: string; dependsOn: string[] }[] = [];
  for (const p of packages) {
    const purl = packagePurl(p, row);
    components.set(purl, { ...component(p, purl), type: 'application', properties: [{ name: 'cachito:pkg_manager', value: p.type }, { name: 'cachito:path', value: p.path }] });
    graph.push({ ref: purl, dependsOn: [...new Set(p.dependencies.map(dependencyPurl))].sort() });
  }
  for (const d of uniqueDependencies(packages)) {
    const purl = dependencyPurl(d);
    if (components.has(purl)) continue;
    components.set(purl, component(d, purl, { scope: (d as Dependency).dev ? 'optional' : 'required' }));
  }
  graph.unshift({ ref: rootRef, dependsOn: packages.map((p) => packagePurl(p, row)).sort() });
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    serialNumber: serialFor(row),
    version: 1,
    metadata: {
      timestamp: `${cachitoTime(row.updatedAt).slice(0, 19)}Z`,
      tools: { components: [{ type: 'application', name: 'dockyard-source-cache' }] },
      component: { type: 'application', 'bom-ref': rootRef, name: row.repo, version: row.ref, purl: rootRef },
    },
    components: [...components.values()].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0)),
    dependencies: graph,
  };
}
