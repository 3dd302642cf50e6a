import Docker from 'dockerode';
import tar from 'tar-stream';
import { alice, multipart, startExecution, until, type Harness } from './helpers.js';

/** The same job as run.test.ts, with files copied in and out through the engine API (a remote engine). */
describe('execution: /inbox and /outbox through engine archives (DOCKYARD_EXECUTION_FILES=archive)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startExecution({ DOCKYARD_EXECUTION_FILES: 'archive', DOCKYARD_EXECUTION_IMAGES: 'dockyard/*,dockyard-test/*' });
  });
  afterAll(async () => {
    await new Docker().getImage(noShell).remove({ force: true }).catch(() => undefined);
    await h?.close();
  });
  const noShell = `dockyard-test/noshell:${process.pid}`;

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

  it('runs the command split into arguments in an image without /bin/sh', async () => {
    // An image holding only a busybox binary at /busybox (no /bin/sh), made from dockyard/busybox.
    const docker = new Docker();
    const source = await docker.createContainer({ Image: 'dockyard/busybox:latest', Cmd: ['true'] });
    const chunks: Buffer[] = [];
    try {
      for await (const c of (await source.getArchive({ path: '/bin/busybox' })) as AsyncIterable<Buffer>) chunks.push(c);
    } finally {
      await source.remove({ force: true });
    }
    const pack = tar.pack();
    const extract = tar.extract();
    extract.on('entry', (header, stream, next) => {
      stream.pipe(pack.entry({ ...header, name: 'busybox' }, next));
    });
    extract.on('finish', () => pack.finalize());
    extract.end(Buffer.concat(chunks));
    await new Promise<void>((resolve, reject) =>
      (docker.importImage(pack as never, { repo: noShell.split(':')[0], tag: noShell.split(':')[1] } as never) as unknown as Promise<NodeJS.ReadableStream>).then(
        (s) => docker.modem.followProgress(s, (err: Error | null) => (err ? reject(err) : resolve())),
        reject,
      ),
    );

    const pid = (await h.app.inject({ method: 'POST', url: '/pipeline', headers: h.as(alice), payload: { name: 'n' } })).json().id;
    const jid = (await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: h.as(alice), payload: { command: `/busybox echo "hello  there" 'and more'`, image_id: noShell } })).json().id;
    await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/submit`, headers: h.as(alice) });
    const job = await until(async () => {
      const j = (await h.app.inject({ url: `/pipeline/${pid}/job/${jid}`, headers: h.as(alice) })).json()[jid];
      return ['done', 'failed'].includes(j.state) && j;
    }, 'the job to end');
    expect(job).toMatchObject({ state: 'done', reason: null });
    const lines = (await h.app.inject({ url: `/execution/${jid}/logs`, headers: h.as(alice) })).json().map((l: { logline: string }) => l.logline);
    expect(lines).toEqual(['hello  there and more']);
  });
});
