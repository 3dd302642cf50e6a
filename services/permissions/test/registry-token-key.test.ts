import { createVerify, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '@dockyard/kit';
import { loadPermissionsConfig } from '../src/config.js';
import { libtrustKeyId, loadSigningKey, signRegistryToken } from '../src/domain/registry-token.js';
import { parseScope } from '../src/routes/registry-token.js';

describe('registry token signing key (unit)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dockyard-token-key-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes an RSA key pair and certificate on first start, readable by its owner only, and reuses it', () => {
    const first = loadSigningKey({ dir: path.join(dir, 'made') });
    expect(statSync(path.join(dir, 'made/key.pem')).mode & 0o777).toBe(0o600);
    expect(first.header.alg).toBe('RS256');
    const again = loadSigningKey({ dir: path.join(dir, 'made') });
    expect(again.header.kid).toBe(first.header.kid);
    const cert = new X509Certificate(first.certPem);
    expect(cert.ca).toBe(true);
    expect(libtrustKeyId(cert.publicKey.export({ type: 'spki', format: 'der' }))).toBe(first.header.kid);
    const jwt = signRegistryToken(first, { issuer: 'i', subject: 's', audience: 'a', ttlSeconds: 60, access: [] }, new Date('2026-01-01T00:00:00Z'));
    const [h, p, sig] = jwt.split('.');
    expect(createVerify('sha256').update(`${h}.${p}`).verify(cert.publicKey, Buffer.from(sig, 'base64url'))).toBe(true);
    expect(JSON.parse(Buffer.from(p, 'base64url').toString())).toMatchObject({ iss: 'i', sub: 's', aud: 'a', iat: 1767225600, nbf: 1767225590, exp: 1767225660, access: [] });
  });

  it('takes configured PEM files, refuses a certificate of another key, and wants both files or neither', () => {
    const a = loadSigningKey({ dir: path.join(dir, 'a') });
    const b = loadSigningKey({ dir: path.join(dir, 'b') });
    writeFileSync(path.join(dir, 'b-cert.pem'), b.certPem);
    expect(loadSigningKey({ keyFile: path.join(dir, 'a/key.pem'), certFile: path.join(dir, 'a/cert.pem'), dir: '/nonexistent' }).header.kid).toBe(a.header.kid);
    expect(() => loadSigningKey({ keyFile: path.join(dir, 'a/key.pem'), certFile: path.join(dir, 'b-cert.pem'), dir })).toThrow('does not belong to the key');
    const env = { DOCKYARD_INTERNAL_SECRET: 'x'.repeat(32), DOCKYARD_REGISTRY_TOKEN_KEY: path.join(dir, 'a/key.pem') };
    expect(() => loadPermissionsConfig(env)).toThrow(ConfigError);
    expect(() => loadPermissionsConfig(env)).toThrow(/DOCKYARD_REGISTRY_TOKEN_KEY and DOCKYARD_REGISTRY_TOKEN_CERT go together/);
  });

  it('parses registry scopes', () => {
    expect(parseScope('repository:sage/simple:pull,push')).toEqual({ type: 'repository', name: 'sage/simple', actions: ['pull', 'push'] });
    expect(parseScope('repository:sage/simple:pull,pull')).toEqual({ type: 'repository', name: 'sage/simple', actions: ['pull'] });
    expect(parseScope('registry:catalog:*')).toEqual({ type: 'registry', name: 'catalog', actions: ['*'] });
    expect(parseScope('repository:sage/simple:')).toEqual({ type: 'repository', name: 'sage/simple', actions: [] });
    expect(() => parseScope('repository:sage/simple')).toThrow(/not of the form/);
    expect(() => parseScope(':x:pull')).toThrow(/not of the form/);
  });
});
