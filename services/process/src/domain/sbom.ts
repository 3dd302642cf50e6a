import { randomUUID } from 'node:crypto';
import { PackageURL } from 'packageurl-js';
import type { OsRelease, Pkg } from './packages.js';

/** The purl of a package found in an image of the given OS. */
export function purlOf(p: Pkg, os: OsRelease | null): string {
  const distro = os ? `${os.id}-${os.versionId ?? os.codename ?? ''}`.replace(/-$/, '') : undefined;
  switch (p.type) {
    case 'deb': {
      const q: Record<string, string> = {};
      if (p.arch) q.arch = p.arch;
      if (distro) q.distro = distro;
      return new PackageURL('deb', os?.id ?? 'debian', p.name, p.version, q, undefined).toString();
    }
    case 'apk': {
      const q: Record<string, string> = {};
      if (p.arch) q.arch = p.arch;
      if (distro) q.distro = distro;
      return new PackageURL('apk', os?.id ?? 'alpine', p.name, p.version, q, undefined).toString();
    }
    case 'npm': {
      const scoped = /^(@[^/]+)\/(.+)$/.exec(p.name);
      return new PackageURL('npm', scoped?.[1] ?? undefined, scoped?.[2] ?? p.name, p.version, undefined, undefined).toString();
    }
    default:
      return new PackageURL('pypi', undefined, p.name, p.version, undefined, undefined).toString();
  }
}

/** A CycloneDX 1.6 JSON SBOM of an image's packages. */
export function cycloneDx(o: { name: string; version?: string; os: OsRelease | null; packages: Pkg[]; timestamp?: Date; properties?: Record<string, string> }): object {
  const components: object[] = [];
  if (o.os) components.push({ type: 'operating-system', 'bom-ref': `os:${o.os.id}`, name: o.os.id, version: o.os.versionId ?? o.os.codename ?? undefined, description: o.os.prettyName ?? undefined });
  for (const p of o.packages) {
    const purl = purlOf(p, o.os);
    components.push({ type: p.type === 'deb' || p.type === 'apk' ? 'library' : 'library', 'bom-ref': purl, name: p.name, version: p.version, purl });
  }
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    serialNumber: `urn:uuid:${randomUUID()}`,
    version: 1,
    metadata: {
      timestamp: (o.timestamp ?? new Date()).toISOString(),
      tools: { components: [{ type: 'application', name: 'dockyard-process' }] },
      component: { type: 'container', 'bom-ref': `container:${o.name}`, name: o.name, version: o.version },
      properties: Object.entries(o.properties ?? {}).map(([name, value]) => ({ name, value })),
    },
    components,
  };
}

export interface SbomPackage extends Omit<Pkg, 'type'> {
  type: string;
  /** How the SBOM named it (purl or name@version), for messages. */
  ref: string;
}

export interface ParsedSbom {
  format: 'CycloneDX' | 'SPDX';
  os: { id: string; version: string | null } | null;
  packages: SbomPackage[];
}

interface CdxComponent {
  type?: string;
  name?: string;
  version?: string;
  purl?: string;
  components?: CdxComponent[];
}

function fromPurl(purl: string): { pkg: SbomPackage; os: { id: string; version: string | null } | null } | null {
  try {
    const p = PackageURL.fromString(purl);
    if (!p.version) return null;
    const q = (p.qualifiers ?? {}) as Record<string, string>;
    const name = p.namespace && p.type === 'npm' ? `${p.namespace}/${p.name}` : p.name;
    let os: { id: string; version: string | null } | null = null;
    if ((p.type === 'deb' || p.type === 'apk') && p.namespace) {
      const distro = q.distro ?? null;
      const version = distro ? distro.replace(new RegExp(`^${p.namespace}-`), '') : null;
      os = { id: p.namespace, version };
    }
    return { pkg: { type: p.type, name, version: p.version, arch: q.arch ?? null, ref: purl }, os };
  } catch {
    return null;
  }
}

/** Reads a CycloneDX or SPDX JSON SBOM; null when the document is neither. */
export function parseSbom(doc: unknown): ParsedSbom | null {
  if (!doc || typeof doc !== 'object') return null;
  const d = doc as Record<string, unknown>;
  const packages: SbomPackage[] = [];
  let os: ParsedSbom['os'] = null;
  const osFromPurl = (o: ParsedSbom['os']) => {
    if (o && (!os || (!os.version && o.version))) os = o;
  };
  if (d.bomFormat === 'CycloneDX') {
    const all: CdxComponent[] = [];
    const walk = (list: unknown) => {
      if (!Array.isArray(list)) return;
      for (const c of list as CdxComponent[]) {
        all.push(c);
        walk(c.components);
      }
    };
    walk(d.components);
    let declared: ParsedSbom['os'] = null;
    for (const c of all) {
      if (c.type === 'operating-system' && c.name) {
        declared = { id: c.name.toLowerCase(), version: c.version ?? null };
        continue;
      }
      const parsed = c.purl ? fromPurl(c.purl) : null;
      if (parsed) {
        packages.push(parsed.pkg);
        osFromPurl(parsed.os);
      } else if (c.name && c.version) packages.push({ type: 'unknown', name: c.name, version: c.version, ref: `${c.name}@${c.version}` });
    }
    return { format: 'CycloneDX', os: declared ?? os, packages };
  }
  if (typeof d.spdxVersion === 'string' && d.spdxVersion.startsWith('SPDX-')) {
    let declared: ParsedSbom['os'] = null;
    for (const p of (Array.isArray(d.packages) ? d.packages : []) as Record<string, unknown>[]) {
      const name = typeof p.name === 'string' ? p.name : null;
      const version = typeof p.versionInfo === 'string' ? p.versionInfo : null;
      if (p.primaryPackagePurpose === 'OPERATING-SYSTEM' && name) {
        declared = { id: name.toLowerCase(), version };
        continue;
      }
      const refs = (Array.isArray(p.externalRefs) ? p.externalRefs : []) as { referenceType?: string; referenceLocator?: string }[];
      const purl = refs.find((r) => r.referenceType === 'purl')?.referenceLocator;
      const parsed = purl ? fromPurl(purl) : null;
      if (parsed) {
        packages.push(parsed.pkg);
        osFromPurl(parsed.os);
      } else if (name && version && p.SPDXID !== 'SPDXRef-DOCUMENT') packages.push({ type: 'unknown', name, version, ref: `${name}@${version}` });
    }
    return { format: 'SPDX', os: declared ?? os, packages };
  }
  return null;
}

/** Does an SBOM's OS (e.g. debian 12, debian bookworm, debian-12.5) match an image's os-release? */
export function osMatches(want: { id: string; version: string | null }, have: OsRelease | null): boolean {
  if (!have || want.id.toLowerCase() !== have.id.toLowerCase()) return false;
  if (!want.version) return true;
  const v = want.version.toLowerCase();
  if (have.codename && v === have.codename.toLowerCase()) return true;
  if (!have.versionId) return false;
  return v === have.versionId || v.split('.')[0] === have.versionId.split('.')[0];
}
