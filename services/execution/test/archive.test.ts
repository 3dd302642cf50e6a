import { alice, multipart, startExecution, until, type Harness } from './helpers.js';

/** The same job as run.test.ts, with files copied in and out through the engine API (a remote engine). */
describe('execution: /inbox and /outbox through engine archives (DOCKYARD_EXECUTION_FILES=archive)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startExecution({ DOCKYARD_EXECUTION_FILES: 'archive' });
  });
  afterAll(async () => h?.close());

  it('copies attachments in before the start and /outbox out after the exit, links left out', async () => {
    const pid = (await h.app.inject({ method: 'POST', url: '/pipeline', headers: h.as(alice), payload: { name: 'a' } })).json().id;
    const body = await multipart({ image_id: '7', command: 'cat /inbox/file1 > /outbox/copy && mkdir /outbox/d && echo x > /outbox/d/y && ln -s /etc/hostname /outbox/leak' }, [
      { name: 'file1', body: 'via archive\n' },
    ]);
    const jid = (await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: { ...h.as(alice), ...body.headers }, payload: body.payload })).json().id;
    await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    const job = await until(async () => {
      const j = (await h.app.inject({ url: `/pipeline/${pid}/job/${jid}`, headers: h.as(alice) })).json()[jid];
      return ['done', 'failed'].includes(j.state) && j;
    }, 'the job to end');
    expect(job).toMatchObject({ state: 'done' });
    const zip = await h.app.inject({ url: `/pipeline/${pid}/job/${jid}?result`, headers: h.as(alice) });
    const { default: yauzl } = await import('yauzl');
    const names = await new Promise<string[]>((resolve, reject) =>
      yauzl.fromBuffer(zip.rawPayload, { lazyEntries: false }, (err, z) => {
        if (err) return reject(err);
        const out: string[] = [];
        z.on('entry', (e: { fileName: string }) => out.push(e.fileName));
        z.on('end', () => resolve(out.sort()));
      }),
    );
    expect(names).toEqual(['copy', 'd/', 'd/y']);
  });
});
