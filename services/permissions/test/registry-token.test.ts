/**
 * The OCI registry follows Dockyard's permissions: a real Distribution registry (Debian's
 * docker-registry) started here on its own port with `auth.token` pointing at the gateway's
 * /auth/registry/token, the gateway and the permissions service listening on real ports, and the
 * Docker daemon for `docker login` + `docker push`. The shared registry on :5000 is not touched.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate, createVerify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { request } from '@dockyard/kit';
import { testEnv, type TestEnv, freePort } from '@dockyard/kit/testing';
import type { ResourceRef } from '@dockyard/contracts';
import { buildPermissionsApp } from '../src/app.js';
import { loadPermissionsConfig } from '../src/config.js';
import { selfSignedCertificate, signingKeyFrom, signRegistryToken, type SigningKey } from '../src/domain/registry-token.js';
import { buildGateway } from '../../../gateway/src/app.js';
import { loadGatewayConfig } from '../../../gateway/src/config.js';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '../../..');
const SERVICE = 'dockyard-registry';


const basic = (login: string, password: string) => `Basic ${Buffer.from(`${login}:${password}`).toString('base64')}`;
const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('OCI registry token service (real docker-registry with auth.token, gateway, permissions, dockerd)', () => {
  let env: TestEnv;
  let permissions: FastifyInstance;
  let gateway: FastifyInstance;
  let registry: ChildProcess;
  let registryLog = '';
  let gatewayUrl: string;
  let registryUrl: string;
  let registryHost: string;
  let certPem: string;
  let ecKey: SigningKey;
  const dockerConfig = mkdtempSync(path.join(os.tmpdir(), 'dockyard-docker-config-'));
  const tags: string[] = [];

  /** What Docker does: ask the realm for a token with the given credential and scopes. */
  async function token(authorization: string | null, ...scopes: string[]) {
    const query = new URLSearchParams({ service: SERVICE, account: 'whoever' });
    for (const s of scopes) query.append('scope', s);
    const res = await fetch(`${gatewayUrl}/auth/registry/token?${query}`, { headers: authorization ? { authorization } : {} });
    return { status: res.status, body: (await res.json()) as { token: string; access_token: string; expires_in: number; error?: string } };
  }
  const v2 = (url: string, bearer: string | null, init: RequestInit = {}) =>
    fetch(`${registryUrl}/v2/${url}`, { ...init, headers: { ...(init.headers as Record<string, string>), ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) } });

  /** Uploads a blob (monolithic POST + PUT), as a client pushing a layer does; returns the final status. */
  async function pushBlob(name: string, bearer: string | null, data: Buffer): Promise<number> {
    const start = await v2(`${name}/blobs/uploads/`, bearer, { method: 'POST' });
    if (start.status !== 202) return start.status;
    const location = new URL(start.headers.get('location')!, registryUrl);
    location.searchParams.set('digest', sha256(data));
    const put = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${bearer}` } });
    return put.status;
  }
  /** A minimal image: an empty config blob and one layer, then its schema 2 manifest under `tag`. */
  async function pushImage(name: string, bearer: string | null, tag: string): Promise<number> {
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const layer = Buffer.from(`layer of ${name}`);
    for (const blob of [config, layer]) {
      const status = await pushBlob(name, bearer, blob);
      if (status !== 201) return status;
    }
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha256(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha256(layer) }],
    });
    const res = await v2(`${name}/manifests/${tag}`, bearer, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' } });
    return res.status;
  }
  const pullManifest = async (name: string, bearer: string | null, tag = 'v1') =>
    (await v2(`${name}/manifests/${tag}`, bearer, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } })).status;
  const docker = (...args: string[]) => run('docker', args, { env: { ...process.env, DOCKER_CONFIG: dockerConfig }, timeout: 60_000 });

  beforeAll(async () => {
    env = testEnv();
    const permissionsConfig = loadPermissionsConfig(env.serviceEnv('permissions', { DOCKYARD_SEED_TEST_USERS: '1' }));
    ({ app: permissions } = await buildPermissionsApp(permissionsConfig));
    await permissions.listen({ host: '127.0.0.1', port: 0 });
    const permissionsPort = (permissions.server.address() as { port: number }).port;
    const gatewayConfig = loadGatewayConfig({ ...env.env, DOCKYARD_PORT: '0', DOCKYARD_PERMISSIONS_URL: `http://127.0.0.1:${permissionsPort}`, DOCKYARD_ACCESS_LOG: '0' });
    gateway = (await buildGateway(gatewayConfig)).app;
    await gateway.listen({ host: '127.0.0.1', port: 0 });
    gatewayUrl = `http://127.0.0.1:${(gateway.server.address() as { port: number }).port}`;

    // The registry's configuration as deploy/local/registry-auth.sh writes it, trusting the
    // certificate the permissions service made on its first start.
    const port = await freePort();
    registryHost = `127.0.0.1:${port}`;
    registryUrl = `http://${registryHost}`;
    const certFile = path.join(env.dataDir, 'permissions/registry-token/cert.pem');
    const script = (extra: Record<string, string>) =>
      run(path.join(repoRoot, 'deploy/local/registry-auth.sh'), ['config'], {
        env: {
          ...process.env,
          DOCKYARD_RUN_DIR: path.join(env.dataDir, 'run'),
          DOCKYARD_AUTH_REGISTRY_PORT: String(port),
          DOCKYARD_REGISTRY_TOKEN_REALM: `${gatewayUrl}/auth/registry/token`,
          ...extra,
        },
      });
    // The script makes an EC key pair when there is none (as for a registry started before the
    // service); the registry trusts both that and the RSA one the service made (a bundle).
    const scriptData = path.join(env.dataDir, 'script-data');
    await script({ DOCKYARD_DATA_DIR: scriptData });
    const ecDir = path.join(scriptData, 'permissions/registry-token');
    ecKey = signingKeyFrom(readFileSync(path.join(ecDir, 'key.pem'), 'utf8'), readFileSync(path.join(ecDir, 'cert.pem'), 'utf8'));
    const bundle = path.join(env.dataDir, 'bundle.pem');
    writeFileSync(bundle, readFileSync(certFile, 'utf8') + ecKey.certPem);
    const { stdout } = await script({ DOCKYARD_REGISTRY_TOKEN_CERT: bundle });
    registry = spawn('/usr/bin/docker-registry', ['serve', stdout.trim()], { stdio: ['ignore', 'pipe', 'pipe'] });
    registry.stdout!.on('data', (d) => (registryLog += d));
    registry.stderr!.on('data', (d) => (registryLog += d));
    for (const deadline = Date.now() + 20_000; ; await new Promise((r) => setTimeout(r, 100))) {
      const up = await fetch(`${registryUrl}/v2/`).then((r) => r.status === 401, () => false);
      if (up) break;
      if (Date.now() > deadline || registry.exitCode !== null) throw new Error(`docker-registry did not come up:\n${registryLog}`);
    }
    certPem = readFileSync(certFile, 'utf8');

    // What the registry service does on creation: owners. `pub/tool` is public.
    const own = (resource: ResourceRef, owner: string) => request(permissions.nats, permissions.subjects.of('permissions.own'), { resource, owner });
    await own({ type: 'namespace', name: 'sage' }, 'testuser');
    await own({ type: 'repository', name: 'sage/simple' }, 'testuser');
    await own({ type: 'namespace', name: 'pub' }, 'testuser');
    await own({ type: 'repository', name: 'pub/tool' }, 'testuser');
    const makePublic = await fetch(`${gatewayUrl}/permissions/pub/tool`, {
      method: 'PUT',
      headers: { authorization: 'sage testuser_token' },
      body: '{"operation": "add", "granteeType": "GROUP", "grantee": "AllUsers", "permission": "READ"}',
    });
    expect(await makePublic.json()).toEqual({ added: 1 });
  }, 60_000);

  afterAll(async () => {
    for (const tag of tags) await run('docker', ['rmi', tag]).catch(() => undefined);
    if (registry && registry.exitCode === null) {
      const exited = new Promise((r) => registry.once('exit', r));
      registry.kill('SIGTERM');
      await exited;
    }
    await gateway?.close();
    await permissions?.close();
    await env?.cleanup();
    rmSync(dockerConfig, { recursive: true, force: true });
  });

  it('asks for a token at the realm, and the registry refuses a client without one', async () => {
    const res = await fetch(`${registryUrl}/v2/`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="${gatewayUrl}/auth/registry/token",service="${SERVICE}"`);
  });

  it('issues signed tokens granting only what the permission model allows', async () => {
    // `docker login` with a login and a Dockyard token as password; the login may be anything.
    for (const auth of [basic('testuser', 'testuser_token'), basic('anyone', 'testuser_token'), 'sage testuser_token']) {
      const { status, body } = await token(auth, 'repository:sage/simple:pull,push');
      expect(status).toBe(200);
      expect(body.access_token).toBe(body.token);
      expect(body.expires_in).toBe(300);
      const claims = claimsOf(body.token);
      expect(claims).toMatchObject({ iss: 'dockyard', sub: 'testuser', aud: SERVICE, access: [{ type: 'repository', name: 'sage/simple', actions: ['pull', 'push'] }] });
      expect(claims.exp - claims.iat).toBe(300);
    }
    // The signature verifies with the certificate the registry trusts; the header carries x5c and a libtrust kid.
    const { body } = await token(basic('testuser', 'testuser_token'), 'repository:sage/simple:pull');
    const [header, payload, signature] = body.token.split('.');
    const cert = new X509Certificate(certPem);
    expect(createVerify('sha256').update(`${header}.${payload}`).verify(cert.publicKey, Buffer.from(signature, 'base64url'))).toBe(true);
    const head = JSON.parse(Buffer.from(header, 'base64url').toString());
    expect(head).toMatchObject({ alg: 'RS256', typ: 'JWT', x5c: [cert.raw.toString('base64')] });
    expect(head.kid).toMatch(/^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);

    const other = await token(basic('testuser2', 'testuser2_token'), 'repository:sage/simple:pull,push', 'repository:pub/tool:pull,push');
    expect(claimsOf(other.body.token).access).toEqual([
      { type: 'repository', name: 'sage/simple', actions: [] },
      { type: 'repository', name: 'pub/tool', actions: ['pull'] },
    ]);
    const anonymous = await token(null, 'repository:pub/tool:pull,push repository:sage/simple:pull', 'registry:catalog:*', 'repository:a/b/c:pull');
    expect(claimsOf(anonymous.body.token)).toMatchObject({
      sub: '',
      access: [
        { type: 'repository', name: 'pub/tool', actions: ['pull'] },
        { type: 'repository', name: 'sage/simple', actions: [] },
        { type: 'registry', name: 'catalog', actions: [] },
        { type: 'repository', name: 'a/b/c', actions: [] },
      ],
    });
    const admin = await token(basic('admin', 'admin_token'), 'registry:catalog:*', 'repository:sage/simple:delete');
    expect(claimsOf(admin.body.token).access).toEqual([
      { type: 'registry', name: 'catalog', actions: ['*'] },
      { type: 'repository', name: 'sage/simple', actions: ['delete'] },
    ]);
  });

  it('refuses a wrong credential, another service and a malformed scope', async () => {
    const wrong = await token(basic('testuser', 'not-a-token'), 'repository:sage/simple:pull');
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual({ error: 'Wrong login or password' });
    const service = await fetch(`${gatewayUrl}/auth/registry/token?service=elsewhere`);
    expect(service.status).toBe(400);
    expect(await service.json()).toEqual({ error: 'service: this token service signs for "dockyard-registry", not "elsewhere"' });
    const noService = await fetch(`${gatewayUrl}/auth/registry/token`);
    expect(await noService.json()).toEqual({ error: 'Field service is required (querystring)' });
    const scope = await token(null, 'repository-sage-simple');
    expect(scope.status).toBe(400);
    expect(scope.body.error).toBe('scope: "repository-sage-simple" is not of the form repository:<namespace>/<name>:<actions>');
  });

  it('lets the registry accept an authorized push and refuse an unauthorized one', async () => {
    const owner = (await token(basic('testuser', 'testuser_token'), 'repository:sage/simple:pull,push')).body.token;
    expect(await pushImage('sage/simple', owner, 'v1')).toBe(201);
    expect(await pullManifest('sage/simple', owner)).toBe(200);
    // testuser2 holds nothing on sage/simple: an empty grant, refused by the registry.
    const stranger = (await token(basic('testuser2', 'testuser2_token'), 'repository:sage/simple:pull,push')).body.token;
    expect(await pushBlob('sage/simple', stranger, Buffer.from('intruder'))).toBe(401);
    expect(await pullManifest('sage/simple', stranger)).toBe(401);
    // A token for one repository does not open another.
    expect(await pushBlob('pub/tool', owner, Buffer.from('elsewhere'))).toBe(401);
    // A token signed by a key the registry does not trust is refused.
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const forger = signingKeyFrom(keyPem, selfSignedCertificate(keyPem, publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'forger'));
    const forged = signRegistryToken(forger, { issuer: 'dockyard', subject: 'testuser2', audience: SERVICE, ttlSeconds: 300, access: [{ type: 'repository', name: 'sage/simple', actions: ['pull', 'push'] }] });
    expect(await pullManifest('sage/simple', forged)).toBe(401);
    expect(registryLog).toMatch(/insufficient scope/);
    // Either half of the header is enough: `kid` alone (libtrust's id, what registries without
    // x5c support look up) and `x5c` alone.
    const serviceKey = signingKeyFrom(readFileSync(path.join(env.dataDir, 'permissions/registry-token/key.pem'), 'utf8'), certPem);
    const pullOnly = { issuer: 'dockyard', subject: 'testuser', audience: SERVICE, ttlSeconds: 300, access: [{ type: 'repository', name: 'sage/simple', actions: ['pull'] }] };
    const { x5c: _x5c, ...kidOnly } = serviceKey.header;
    const { kid: _kid, ...x5cOnly } = serviceKey.header;
    expect(await pullManifest('sage/simple', signRegistryToken({ ...serviceKey, header: kidOnly as SigningKey['header'] }, pullOnly))).toBe(200);
    expect(await pullManifest('sage/simple', signRegistryToken({ ...serviceKey, header: x5cOnly as SigningKey['header'] }, pullOnly))).toBe(200);
    // ...but the claims are checked: another audience or issuer is refused.
    expect(await pullManifest('sage/simple', signRegistryToken(serviceKey, { ...pullOnly, audience: 'elsewhere' }))).toBe(401);
    expect(await pullManifest('sage/simple', signRegistryToken(serviceKey, { ...pullOnly, issuer: 'someone' }))).toBe(401);
    // ES256 with the EC key registry-auth.sh makes (the service uses it when given or found).
    expect(ecKey.header.alg).toBe('ES256');
    const es256 = signRegistryToken(ecKey, { issuer: 'dockyard', subject: 'testuser', audience: SERVICE, ttlSeconds: 300, access: [{ type: 'repository', name: 'sage/simple', actions: ['pull'] }] });
    expect(await pullManifest('sage/simple', es256)).toBe(200);
  });

  it('lets anyone pull a public repository and no one anonymous pull a private one or push', async () => {
    const owner = (await token(basic('testuser', 'testuser_token'), 'repository:pub/tool:pull,push')).body.token;
    expect(await pushImage('pub/tool', owner, 'v1')).toBe(201);
    const anonymous = (await token(null, 'repository:pub/tool:pull,push')).body.token;
    expect(claimsOf(anonymous).access[0].actions).toEqual(['pull']);
    expect(await pullManifest('pub/tool', anonymous)).toBe(200);
    expect(await pushBlob('pub/tool', anonymous, Buffer.from('vandal'))).toBe(401);
    const anonymousPrivate = (await token(null, 'repository:sage/simple:pull')).body.token;
    expect(await pullManifest('sage/simple', anonymousPrivate)).toBe(401);
  });

  it('follows grant changes: a READ grant lets testuser2 pull, not push', async () => {
    const grant = await fetch(`${gatewayUrl}/permissions/sage/simple`, {
      method: 'PUT',
      headers: { authorization: 'sage testuser_token', 'content-type': 'application/x-www-form-urlencoded' },
      body: '{"operation": "add", "granteeType": "USER", "grantee": "testuser2", "permission": "READ"}',
    });
    expect(await grant.json()).toEqual({ added: 1 });
    const reader = (await token(basic('testuser2', 'testuser2_token'), 'repository:sage/simple:pull,push')).body.token;
    expect(claimsOf(reader).access[0].actions).toEqual(['pull']);
    expect(await pullManifest('sage/simple', reader)).toBe(200);
    expect(await pushBlob('sage/simple', reader, Buffer.from('not yours'))).toBe(401);
  });

  it('works with `docker login` and `docker push` through the Docker daemon', async () => {
    const image = `${registryHost}/sage/simple:docker`;
    await docker('tag', 'dockyard/busybox:latest', image);
    tags.push(image);
    // Refused before login (anonymous: no push), then accepted with a Dockyard token as password.
    await expect(docker('push', image)).rejects.toMatchObject({ stderr: expect.stringMatching(/unauthorized|authentication required|denied/i) });
    const login = spawn('docker', ['login', registryHost, '--username', 'someone', '--password-stdin'], { env: { ...process.env, DOCKER_CONFIG: dockerConfig } });
    let loginOutput = '';
    login.stdout.on('data', (d) => (loginOutput += d));
    login.stderr.on('data', (d) => (loginOutput += d));
    login.stdin.end('testuser_token\n');
    expect(await new Promise((r) => login.once('exit', r))).toBe(0);
    expect(loginOutput).toContain('Login Succeeded');
    const { stdout } = await docker('push', image);
    expect(stdout).toMatch(/docker: digest: sha256:[0-9a-f]{64}/);
    await docker('logout', registryHost);

    // testuser2 may only read sage/simple now: the daemon's push is refused.
    const login2 = spawn('docker', ['login', registryHost, '--username', 'testuser2', '--password-stdin'], { env: { ...process.env, DOCKER_CONFIG: dockerConfig } });
    login2.stdin.end('testuser2_token\n');
    expect(await new Promise((r) => login2.once('exit', r))).toBe(0);
    const image2 = `${registryHost}/sage/simple:by-testuser2`;
    await docker('tag', 'dockyard/busybox:latest', image2);
    tags.push(image2);
    await expect(docker('push', image2)).rejects.toMatchObject({ stderr: expect.stringMatching(/unauthorized|authentication required|denied/i) });
    await docker('logout', registryHost);
  }, 90_000);
});
