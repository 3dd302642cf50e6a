import { assertGitUrlAllowed, parseGitPolicy, parseGitUrl } from '../src/index.js';

// A resolver standing in for DNS, so the policy is tested without the network.
const dns: Record<string, string[]> = {
  'github.com': ['140.82.112.3'],
  'evil.example': ['10.0.0.5'],
  'metadata.example': ['169.254.169.254'],
  'mixed.example': ['140.82.112.3', '127.0.0.1'],
  'git.internal': ['192.168.1.20'],
};
const resolve = async (host: string) => {
  const found = dns[host];
  if (!found) throw new Error('ENOTFOUND');
  return found;
};
const check = (url: string, policy = '') => assertGitUrlAllowed(url, parseGitPolicy(policy), resolve);

describe('git URL policy (DOCKYARD_GIT_ALLOW)', () => {
  it('allows public hosts over https, http, git and ssh by default', async () => {
    await expect(check('https://github.com/x/y.git')).resolves.toBeUndefined();
    await expect(check('git@github.com:x/y.git')).resolves.toBeUndefined();
    await expect(check('ssh://git@github.com/x/y.git')).resolves.toBeUndefined();
  });

  it.each([
    ['http://127.0.0.1/repo.git', /127\.0\.0\.1, a non-public address/],
    ['http://localhost/repo.git', /could not be resolved|non-public/],
    ['https://evil.example/x.git', /evil\.example" resolves to 10\.0\.0\.5/],
    ['http://metadata.example/latest', /169\.254\.169\.254/],
    ['https://mixed.example/x.git', /127\.0\.0\.1/],
    ['http://[::1]/x.git', /::1/],
    ['http://[::ffff:127.0.0.1]/x.git', /non-public/],
    ['file:///srv/repo.git', /scheme "file" is not allowed/],
    ['ext::sh -c touch% /tmp/pwned', /scheme "ext" is not allowed/],
    ['https://github.com/x\n.git', /control characters/],
  ])('refuses %s by default', async (url, message) => {
    await expect(check(url)).rejects.toMatchObject({ statusCode: 400, message: expect.stringMatching(message) });
  });

  it('allows what is listed explicitly: schemes, hosts, addresses, ranges', async () => {
    await expect(check('file:///srv/repo.git', 'file://')).resolves.toBeUndefined();
    await expect(check('http://127.0.0.1/r.git', '127.0.0.1')).resolves.toBeUndefined();
    await expect(check('https://git.internal/r.git', 'git.internal')).resolves.toBeUndefined();
    await expect(check('https://git.internal/r.git', '192.168.0.0/16')).resolves.toBeUndefined();
    await expect(check('https://evil.example/r.git', '192.168.0.0/16')).rejects.toThrow(/10\.0\.0\.5/);
    // An allowed host name is trusted as named, without resolving it.
    await expect(check('https://a.git.internal/r.git', '*.internal')).resolves.toBeUndefined();
    await expect(check('https://internal/r.git', '*.internal')).rejects.toThrow(/could not be resolved/);
  });

  it('parses scp-like and URL forms', () => {
    expect(parseGitUrl('git@host.example:org/repo.git')).toEqual({ scheme: 'ssh', host: 'host.example' });
    expect(parseGitUrl('HTTPS://Host.Example/x')).toEqual({ scheme: 'https', host: 'host.example' });
  });
});
