import { createHash, createPrivateKey, generateKeyPairSync, randomUUID, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';

/** The key pair that signs registry tokens, and the certificate the registry trusts (`rootcertbundle`). */
export interface SigningKey {
  key: KeyObject;
  certPem: string;
  /** The JWT header: `kid` in libtrust's format and the certificate as an `x5c` chain. */
  header: { typ: 'JWT'; alg: 'RS256' | 'ES256'; kid: string; x5c: string[] };
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * The key id Distribution computes for a trusted public key (libtrust): SHA-256 of the DER
 * SubjectPublicKeyInfo, first 240 bits, base32, in twelve groups of four joined by `:`.
 */
export function libtrustKeyId(spkiDer: Buffer): string {
  const bytes = createHash('sha256').update(spkiDer).digest().subarray(0, 30);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

/** A self-signed certificate for the token key (RSA; node-forge builds the certificate). */
export function selfSignedCertificate(privateKeyPem: string, publicKeyPem: string, commonName: string, years = 10): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  // A positive random serial (the leading byte's high bit clear).
  cert.serialNumber = `0${randomUUID().replace(/-/g, '').slice(0, 15)}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + years * 365 * 86_400_000);
  const name = [{ name: 'commonName', value: commonName }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true },
    { name: 'keyUsage', digitalSignature: true, keyCertSign: true },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(privateKeyPem), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/**
 * Builds the signing key from PEM texts; the certificate must belong to the key. RSA keys sign
 * RS256; EC P-256 keys (e.g. made by `openssl req -x509 -newkey ec ...`) sign ES256, far cheaper per
 * token (0.04 ms against 0.78 ms here).
 */
export function signingKeyFrom(keyPem: string, certPem: string): SigningKey {
  const key = createPrivateKey(keyPem);
  const cert = new X509Certificate(certPem);
  if (!cert.checkPrivateKey(key)) throw new Error('the registry token certificate does not belong to the key');
  const ec = key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  if (key.asymmetricKeyType !== 'rsa' && !ec) throw new Error('the registry token key must be an RSA or EC P-256 key');
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return { key, certPem, header: { typ: 'JWT', alg: ec ? 'ES256' : 'RS256', kid: libtrustKeyId(spki), x5c: [cert.raw.toString('base64')] } };
}

/**
 * The token key: from the given PEM files, else from `dir` (created there on first start, the key
 * readable by its owner only). Every replica must use the same key, so share the directory or
 * give the files.
 */
export function loadSigningKey(opts: { keyFile?: string; certFile?: string; dir: string }): SigningKey {
  if (opts.keyFile && opts.certFile) return signingKeyFrom(readFileSync(opts.keyFile, 'utf8'), readFileSync(opts.certFile, 'utf8'));
  const keyFile = path.join(opts.dir, 'key.pem');
  const certFile = path.join(opts.dir, 'cert.pem');
  try {
    return signingKeyFrom(readFileSync(keyFile, 'utf8'), readFileSync(certFile, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(opts.dir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const certPem = selfSignedCertificate(keyPem, publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'Dockyard registry token issuer');
  try {
    // `wx`: a replica that created the files first wins; the others read them.
    writeFileSync(keyFile, keyPem, { mode: 0o600, flag: 'wx' });
    writeFileSync(certFile, certPem, { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return signingKeyFrom(readFileSync(keyFile, 'utf8'), readFileSync(certFile, 'utf8'));
  }
  return signingKeyFrom(keyPem, certPem);
}

/** One entry of the JWT's `access` claim. */
export interface Access {
  type: string;
  name: string;
  actions: string[];
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** Signs a Distribution registry token (an RS256 or ES256 JWT). */
export function signRegistryToken(
  signing: SigningKey,
  claims: { issuer: string; subject: string; audience: string; ttlSeconds: number; access: Access[] },
  now = new Date(),
): string {
  const iat = Math.floor(now.getTime() / 1000);
  const payload = {
    iss: claims.issuer,
    sub: claims.subject,
    aud: claims.audience,
    // A little slack for clocks that disagree by a few seconds.
    nbf: iat - 10,
    iat,
    exp: iat + claims.ttlSeconds,
    jti: randomUUID(),
    access: claims.access,
  };
  const data = `${b64url(JSON.stringify(signing.header))}.${b64url(JSON.stringify(payload))}`;
  // JWS wants ECDSA signatures as r||s (IEEE P1363), not DER.
  const signature = sign('sha256', Buffer.from(data), { key: signing.key, dsaEncoding: 'ieee-p1363' });
  return `${data}.${b64url(signature)}`;
}
