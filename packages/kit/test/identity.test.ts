import { createSigner } from 'fast-jwt';
import { ANONYMOUS, identitySigner, identityVerifier } from '../src/index.js';

const secret = 's'.repeat(40);
const alice = { id: 'u1', login: 'alice', admin: false, approved: true, groups: ['g'], roles: [] };

describe('internal identity tokens', () => {
  it('round-trips an identity and the anonymous one', () => {
    const sign = identitySigner(secret);
    const verify = identityVerifier(secret);
    expect(verify(sign(alice))).toEqual(alice);
    expect(verify(sign(ANONYMOUS))).toEqual(ANONYMOUS);
  });

  it('refuses a missing, forged, tampered or expired token', async () => {
    const verify = identityVerifier(secret);
    expect(() => verify(undefined)).toThrow(/Missing internal identity token/);
    const forged = identitySigner('f'.repeat(40))(alice);
    expect(() => verify(forged)).toThrow(/Invalid or expired/);
    const [h, , s] = identitySigner(secret)(alice).split('.');
    const payload = Buffer.from(JSON.stringify({ idn: { ...alice, admin: true }, iss: 'dockyard-gateway', exp: Date.now() / 1000 + 60 })).toString('base64url');
    expect(() => verify(`${h}.${payload}.${s}`)).toThrow(/Invalid or expired/);
    const expired = identitySigner(secret, 1)(alice);
    await new Promise((r) => setTimeout(r, 1100));
    expect(() => verify(expired)).toThrow(/Invalid or expired/);
    const noIssuer = createSigner({ key: secret, expiresIn: 60_000 })({ idn: alice });
    expect(() => verify(noIssuer)).toThrow(/Invalid or expired/);
  });
});
