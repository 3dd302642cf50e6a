import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';
import { badRequest, hasControlCharacter } from './errors.js';

/**
 * DOCKYARD_GIT_ALLOW, parsed: the one policy every service that clones obeys. By default only
 * http(s), git and ssh URLs to hosts with public addresses are allowed; loopback, private,
 * link-local (cloud metadata) ranges and file:// must each be allowed explicitly.
 * Entries: a scheme (`file://` or `file:`), a host name (`git.example.org`, `*.example.org`),
 * an address (`127.0.0.1`) or a range (`10.0.0.0/8`).
 */
export interface GitPolicy {
  schemes: Set<string>;
  hosts: string[];
  ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][];
}

const DEFAULT_SCHEMES = ['https', 'http', 'git', 'ssh'];

export function parseGitPolicy(value: string): GitPolicy {
  const policy: GitPolicy = { schemes: new Set(DEFAULT_SCHEMES), hosts: [], ranges: [] };
  for (const raw of value.split(',')) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    const scheme = /^([a-z][a-z0-9+.-]*):(\/\/)?$/.exec(entry);
    if (scheme) policy.schemes.add(scheme[1]);
    else if (entry.includes('/')) policy.ranges.push(ipaddr.parseCIDR(entry));
    else if (ipaddr.isValid(entry)) policy.ranges.push([ipaddr.parse(entry), entry.includes(':') ? 128 : 32]);
    else policy.hosts.push(entry);
  }
  return policy;
}

/** Splits a git URL (including scp-like `user@host:path`) into scheme and host. */
export function parseGitUrl(url: string): { scheme: string; host: string } {
  if (hasControlCharacter(url)) throw badRequest('The git URL contains control characters');
  // git's `<transport>::<address>` form (ext::, fd::) runs helpers: treat the transport as the scheme.
  const transport = /^([a-z][a-z0-9+.-]*)::/i.exec(url);
  if (transport) return { scheme: transport[1].toLowerCase(), host: '' };
  const scp = /^(?:[^@/:]+@)?([^/:]+):(?!\/\/)/.exec(url);
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return { scheme: 'ssh', host: scp[1].toLowerCase() };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badRequest(`"${url}" is not a valid git URL`);
  }
  return { scheme: parsed.protocol.replace(/:$/, '').toLowerCase(), host: parsed.hostname.replace(/^\[|\]$/g, '').toLowerCase() };
}

function hostAllowed(policy: GitPolicy, host: string): boolean {
  return policy.hosts.some((h) => h === host || (h.startsWith('*.') && host.endsWith(h.slice(1))));
}

function addressAllowed(policy: GitPolicy, address: string): boolean {
  let ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
  if (policy.ranges.some(([net, bits]) => net.kind() === ip.kind() && ip.match(net, bits))) return true;
  return ip.range() === 'unicast';
}

/**
 * Refuses (400) a git URL the policy does not allow, resolving the host so a public-looking name
 * that points at a private address is refused too.
 */
export async function assertGitUrlAllowed(
  url: string,
  policy: GitPolicy,
  resolve: (host: string) => Promise<string[]> = async (h) => (await lookup(h, { all: true })).map((a) => a.address),
): Promise<void> {
  const { scheme, host } = parseGitUrl(url);
  if (!policy.schemes.has(scheme)) {
    throw badRequest(`The git URL scheme "${scheme}" is not allowed (DOCKYARD_GIT_ALLOW)`);
  }
  if (scheme === 'file' || hostAllowed(policy, host)) return;
  if (!host) throw badRequest(`The git URL "${url}" has no host`);
  let addresses: string[];
  if (ipaddr.isValid(host)) addresses = [host];
  else {
    try {
      addresses = await resolve(host);
    } catch {
      throw badRequest(`The git host "${host}" could not be resolved`);
    }
  }
  const refused = addresses.find((a) => !addressAllowed(policy, a));
  if (refused !== undefined) {
    throw badRequest(`The git host "${host}" resolves to ${refused}, a non-public address not allowed by DOCKYARD_GIT_ALLOW`);
  }
}
