import { makeRepo } from './fixtures.js';
import { alice, startHarness, type Harness } from './helpers.js';

const REGISTRY = 'https://registry.npmjs.org';

/** The live npm registry, when this machine reaches it (skipped otherwise). */
async function liveIntegrity(): Promise<string | null> {
  try {
    const res = await fetch(`${REGISTRY}/left-pad/1.3.0`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return null;
    return ((await res.json()) as { dist: { integrity: string } }).dist.integrity;
  } catch {
    return null;
  }
}

describe('npm against the live registry (skipped when it is not reachable)', () => {
  let h: Harness | null = null;
  let integrity: string | null = null;
  beforeAll(async () => {
    integrity = await liveIntegrity();
    if (integrity) h = await startHarness(null, { DOCKYARD_NPM_REGISTRY: REGISTRY });
  });
  afterAll(async () => h?.close());

  it('fetches left-pad@1.3.0 with its integrity checked', async () => {
    if (!h || !integrity) {
      console.warn('registry.npmjs.org not reachable: live npm test skipped');
      return;
    }
    const lock = { name: 'live', version: '1.0.0', lockfileVersion: 3, packages: { '': {}, 'node_modules/left-pad': { version: '1.3.0', resolved: `${REGISTRY}/left-pad/-/left-pad-1.3.0.tgz`, integrity } } };
    const repo = makeRepo({ 'package.json': '{"name":"live","version":"1.0.0"}', 'package-lock.json': JSON.stringify(lock) });
    const res = await h.app.inject({ method: 'POST', url: '/api/v1/requests', headers: h.headers(alice), payload: { repo: repo.url, ref: repo.ref, pkg_managers: ['npm'] } });
    const done = await h.settle(res.json().id);
    expect(done).toMatchObject({ state: 'complete', dependencies: [{ name: 'left-pad', type: 'npm', version: '1.3.0', replaces: null }] });
  });
});
