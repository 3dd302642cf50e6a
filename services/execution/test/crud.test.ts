import yazl from 'yazl';
import { alice, bob, multipart, root, startExecution, type Harness } from './helpers.js';

/** A zip whose one entry of zeros inflates to `bytes`. */
async function zipOf(entries: { name: string; bytes: number }[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(Buffer.alloc(e.bytes), e.name);
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('execution: pipelines and jobs CRUD, uploads, ownership (real PostgreSQL, NATS)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startExecution({
      DOCKYARD_EXECUTION_MAX_FILE_BYTES: String(64 * 1024),
      DOCKYARD_EXECUTION_MAX_UPLOAD_BYTES: String(96 * 1024),
      DOCKYARD_EXECUTION_MAX_FILES: '3',
      DOCKYARD_EXECUTION_MAX_EXPANDED_BYTES: String(1024 * 1024),
    });
  });
  afterAll(async () => h?.close());

  const form = (identity = alice) => ({ ...h.as(identity), 'content-type': 'application/x-www-form-urlencoded' });
  const newPipeline = async (name = 'p', identity = alice) => {
    const res = await h.app.inject({ method: 'POST', url: '/pipeline', headers: form(identity), payload: `name=${name}` });
    expect(res.statusCode).toBe(200);
    return res.json().id as number;
  };
  const addJob = async (pid: number, fields: Record<string, string | string[]>, files: { name: string; body: Buffer | string }[] = [], identity = alice) => {
    const body = await multipart(fields, files);
    return h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: { ...h.as(identity), ...body.headers }, payload: body.payload });
  };

  it('creates, shows, lists, renames and deletes pipelines in Kabuto shapes', async () => {
    const id = await newPipeline('my_first_pipeline');
    expect(Number.isInteger(id)).toBe(true);
    const json = await h.app.inject({ method: 'POST', url: '/pipeline', headers: h.as(alice), payload: { name: 'second' } });
    const id2 = json.json().id;
    const shown = await h.app.inject({ url: `/pipeline/${id}`, headers: h.as(alice) });
    expect(shown.json()).toEqual({ [id]: { id, name: 'my_first_pipeline', creation_date: new Date().toISOString().slice(0, 10), jobs: [] } });
    const list = await h.app.inject({ url: '/pipeline', headers: h.as(alice) });
    expect(Object.keys(list.json())).toEqual(expect.arrayContaining([String(id), String(id2)]));
    const missing = await h.app.inject({ method: 'POST', url: '/pipeline', headers: form(), payload: 'nom=x' });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error).toMatch(/name/);
    const renamed = await h.app.inject({ method: 'PUT', url: `/pipeline/${id}`, headers: form(), payload: 'name=renamed' });
    expect(renamed.json()).toEqual({ name: 'Successfully updated name' });
    const del = await h.app.inject({ method: 'DELETE', url: `/pipeline/${id2}`, headers: h.as(alice) });
    expect(del.json()).toEqual({ status: 'Successfully deleted the pipeline' });
    expect((await h.app.inject({ url: `/pipeline/${id2}`, headers: h.as(alice) })).statusCode).toBe(404);
    const anonymous = await h.app.inject({ url: '/pipeline', headers: h.as({ ...alice, id: null, login: null }) });
    expect(anonymous.statusCode).toBe(401);
  });

  it('adds jobs (multipart and form), shows them, removes and rearranges them', async () => {
    const pid = await newPipeline();
    const a = await addJob(pid, { command: 'echo hello world', image_id: '7' }, [{ name: 'file1', body: 'one' }, { name: 'file2', body: 'two' }]);
    expect(a.statusCode).toBe(200);
    const b = await h.app.inject({ method: 'POST', url: `/pipeline/${pid}/job`, headers: form(), payload: 'command=ls&image_id=dockyard/busybox:latest&timeout=30&memory=64m&cpus=0.5&env=A%3D1&network=false' });
    expect(b.statusCode).toBe(200);
    const c = await addJob(pid, { command: 'true', image_id: 'dockyard/busybox' });
    const [ja, jb, jc] = [a.json().id, b.json().id, c.json().id];
    const job = await h.app.inject({ url: `/pipeline/${pid}/job/${ja}`, headers: h.as(alice) });
    expect(job.json()).toEqual({
      [ja]: {
        id: ja,
        command: 'echo hello world',
        state: 'ready',
        creation_date: new Date().toISOString().slice(0, 10),
        used_cpu: 0,
        used_memory: 0,
        used_io: 0,
        image: { id: 7 },
        pipeline: { id: pid },
        reason: null,
      },
    });
    expect((await h.app.inject({ url: `/pipeline/${pid}/job/${jb}`, headers: h.as(alice) })).json()[jb].image).toEqual({ id: 'dockyard/busybox:latest' });

    const early = await h.app.inject({ url: `/pipeline/${pid}/job/${ja}?result`, headers: h.as(alice) });
    expect(early.statusCode).toBe(409);
    expect(early.json()).toEqual({ error: 'Job has not finished running, or has failed' });

    const wrong = await h.app.inject({ method: 'PUT', url: `/pipeline/${pid}`, headers: form(), payload: `rearrange_jobs=${jc},${ja}` });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().error).toBe(`Could not rearrange jobs. rearrange ids are [${jc}, ${ja}] while current ids are [${ja}, ${jb}, ${jc}]`);
    const re = await h.app.inject({ method: 'PUT', url: `/pipeline/${pid}`, headers: form(), payload: `remove_jobs=${jb}&rearrange_jobs=${jc},${ja}` });
    expect(re.json()).toEqual({ remove_jobs: 'Successfully removed jobs', rearrange_jobs: 'Successfully rearranged jobs' });
    expect((await h.app.inject({ url: `/pipeline/${pid}`, headers: h.as(alice) })).json()[pid].jobs).toEqual([{ id: jc }, { id: ja }]);

    const del = await h.app.inject({ method: 'DELETE', url: `/pipeline/${pid}/job/${jc}`, headers: h.as(alice) });
    expect(del.json()).toEqual({ status: 'Successfully deleted the job' });
    expect((await h.app.inject({ url: `/pipeline/${pid}/job/${jc}`, headers: h.as(alice) })).statusCode).toBe(404);
  });

  it('refuses bad fields and images it cannot run (400 naming the field)', async () => {
    const pid = await newPipeline();
    const cases: [Record<string, string>, RegExp][] = [
      [{ image_id: '7' }, /command/],
      [{ command: 'x' }, /image_id/],
      [{ command: 'x', image_id: '404' }, /^Image not found$/],
      [{ command: 'x', image_id: '8' }, /^Image not found$/], // bob's image
      [{ command: 'x', image_id: '9' }, /not built/],
      [{ command: 'x', image_id: 'evil.example/miner:latest' }, /^Image not found$/],
      [{ command: 'x', image_id: '7', timeout: '0' }, /timeout/],
      [{ command: 'x', image_id: '7', memory: '1k' }, /memory/],
      [{ command: 'x', image_id: '7', cpus: '-1' }, /cpus/],
      [{ command: 'x', image_id: '7', env: 'NOEQUALS' }, /env/],
    ];
    for (const [fields, message] of cases) {
      const res = await addJob(pid, fields);
      expect([res.statusCode, res.json().error]).toEqual([400, expect.stringMatching(message)]);
    }
    // An admin may run anyone's image.
    expect((await addJob(pid, { command: 'x', image_id: '8' }, [], root)).statusCode).toBe(200);
  });

  it('refuses attachment names that leave /inbox, too many or too large uploads, and zip bombs', async () => {
    const pid = await newPipeline();
    for (const name of ['../escape', '/etc/passwd', 'a/b', '..', 'x\\..\\y']) {
      const res = await addJob(pid, { command: 'x', image_id: '7' }, [{ name, body: 'x' }]);
      expect([name, res.statusCode, res.json().error]).toEqual([name, 400, expect.stringMatching(/is not allowed/)]);
    }
    const big = await addJob(pid, { command: 'x', image_id: '7' }, [{ name: 'big', body: Buffer.alloc(65 * 1024) }]);
    expect([big.statusCode, big.json().error]).toEqual([413, expect.stringMatching(/too large/)]);
    const total = await addJob(pid, { command: 'x', image_id: '7' }, [
      { name: 'a', body: Buffer.alloc(60 * 1024) },
      { name: 'b', body: Buffer.alloc(60 * 1024) },
    ]);
    expect([total.statusCode, total.json().error]).toEqual([413, expect.stringMatching(/too large/)]);
    const many = await addJob(pid, { command: 'x', image_id: '7' }, ['1', '2', '3', '4'].map((name) => ({ name, body: 'x' })));
    expect(many.statusCode).toBe(413);
    const dup = await addJob(pid, { command: 'x', image_id: '7' }, [{ name: 'a', body: 'x' }, { name: 'a', body: 'y' }]);
    expect([dup.statusCode, dup.json().error]).toEqual([400, expect.stringMatching(/twice/)]);

    const bomb = await zipOf([{ name: 'zeros', bytes: 4 * 1024 * 1024 }]);
    expect(bomb.length).toBeLessThan(64 * 1024);
    const refused = await addJob(pid, { command: 'x', image_id: '7' }, [{ name: 'data.zip', body: bomb }]);
    expect([refused.statusCode, refused.json().error]).toEqual([400, expect.stringMatching(/expands to more than/)]);
    const fine = await addJob(pid, { command: 'x', image_id: '7' }, [{ name: 'data.zip', body: await zipOf([{ name: 'small', bytes: 1000 }]) }]);
    expect(fine.statusCode).toBe(200);
    // Nothing of the refused uploads stays in the pipeline.
    expect((await h.app.inject({ url: `/pipeline/${pid}`, headers: h.as(alice) })).json()[pid].jobs).toEqual([{ id: fine.json().id }]);
  });

  it("keeps one user's pipelines and jobs from another (Kabuto never checked; Dockyard does)", async () => {
    const pid = await newPipeline('private');
    const jid = (await addJob(pid, { command: 'true', image_id: '7' })).json().id;
    const asBob = h.as(bob);
    const attempts = [
      { url: `/pipeline/${pid}` },
      { url: `/pipeline/${pid}`, method: 'PUT' as const, payload: { name: 'mine' } },
      { url: `/pipeline/${pid}`, method: 'DELETE' as const },
      { url: `/pipeline/${pid}/submit`, method: 'POST' as const },
      { url: `/pipeline/${pid}/job/${jid}` },
      { url: `/pipeline/${pid}/job/${jid}?result` },
      { url: `/pipeline/${pid}/job/${jid}`, method: 'DELETE' as const },
      { url: `/pipeline/${pid}/job/${jid}/kill`, method: 'POST' as const },
      { url: `/pipeline/${pid}/job/${jid}/kill` },
      { url: `/execution/${jid}/logs` },
      { url: `/execution/${jid}/logs/0` },
      { url: `/execution/${jid}/logs/stream` },
    ];
    for (const a of attempts) {
      const res = await h.app.inject({ method: a.method ?? 'GET', url: a.url, headers: asBob, payload: a.payload });
      expect([a.method ?? 'GET', a.url, res.statusCode]).toEqual([a.method ?? 'GET', a.url, 404]);
    }
    const added = await addJob(pid, { command: 'true', image_id: 'dockyard/busybox' }, [], bob);
    expect(added.statusCode).toBe(404);
    expect(Object.keys((await h.app.inject({ url: '/pipeline', headers: asBob })).json())).not.toContain(String(pid));
    // An admin may see it.
    expect((await h.app.inject({ url: `/pipeline/${pid}/job/${jid}`, headers: h.as(root) })).statusCode).toBe(200);
  });
});
