import { createApp, runWorker, runsWorkers, servesApi, type BackgroundWorker } from '../src/index.js';

/** A worker whose start fails `failures` times first (as while the Docker engine is down). */
function fakeWorker(failures: number) {
  const calls: string[] = [];
  const worker: BackgroundWorker = {
    async start() {
      calls.push('start');
      if (failures-- > 0) throw new Error('engine down');
    },
    async stop() {
      calls.push('stop');
    },
  };
  return { worker, calls };
}

describe('DOCKYARD_ROLE and runWorker (one worker start shape for every service)', () => {
  it('api serves routes only, worker runs consumers only, all does both', () => {
    expect([servesApi({ DOCKYARD_ROLE: 'api' }), runsWorkers({ DOCKYARD_ROLE: 'api' })]).toEqual([true, false]);
    expect([servesApi({ DOCKYARD_ROLE: 'worker' }), runsWorkers({ DOCKYARD_ROLE: 'worker' })]).toEqual([false, true]);
    expect([servesApi({ DOCKYARD_ROLE: 'all' }), runsWorkers({ DOCKYARD_ROLE: 'all' })]).toEqual([true, true]);
  });

  it('starts nothing in an api process', async () => {
    const app = createApp({ service: 'test', logLevel: 'silent' });
    const { worker, calls } = fakeWorker(0);
    expect(runWorker(app, { DOCKYARD_ROLE: 'api' }, () => worker, { name: 'w' })).toBe(false);
    await app.ready();
    await app.close();
    expect(calls).toEqual([]);
  });

  it('starts once ready, retries a failed start, stops on close', async () => {
    const app = createApp({ service: 'test', logLevel: 'silent' });
    const { worker, calls } = fakeWorker(2);
    let made = 0;
    expect(runWorker(app, { DOCKYARD_ROLE: 'worker' }, () => (made++, worker), { name: 'w', retryMs: 20 })).toBe(true);
    await app.ready();
    for (let i = 0; i < 200 && calls.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    await app.close();
    expect(made).toBe(1);
    expect(calls).toEqual(['start', 'start', 'start', 'stop']);
  });

  it('closing while a start keeps failing cancels the retry', async () => {
    const app = createApp({ service: 'test', logLevel: 'silent' });
    const { worker, calls } = fakeWorker(1000);
    runWorker(app, { DOCKYARD_ROLE: 'all' }, () => worker, { name: 'w', retryMs: 60_000 });
    await app.ready();
    for (let i = 0; i < 200 && calls.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    await app.close();
    expect(calls).toEqual(['start', 'stop']);
  });
});
