import { call, download, getJson, sendForm, streamSse } from '../api.js';
import { live } from '../live.js';
import type { PageContext } from '../main.js';
import { button, bytes, errorBox, field, form, h, link, rawJson, replace, stateBadge, table, values } from '../ui.js';

interface Image {
  id: number;
  name: string;
  dockerfile?: string;
  creation_date?: string;
}
interface Pipeline {
  id: number;
  name: string;
  creation_date?: string;
  jobs: { id: number }[];
}
interface Job {
  id: number;
  command: string;
  state: string;
  creation_date?: string;
  used_cpu?: number | null;
  used_memory?: number | null;
  used_io?: number | null;
  reason?: string | null;
  image?: { id: number | string };
  pipeline?: { id: number };
}
interface ImageBuild {
  state: string;
  id?: number;
  error?: string;
  output?: string[];
}

const BUILDS_KEY = 'dockyard.imageBuilds';

export async function imagesPage({ main, onLeave }: PageContext) {
  const list = h('div', { id: 'images' });
  const builds = h('div', { id: 'image-builds' });
  const name = h('input', { name: 'name', required: true, id: 'image-name' });
  const dockerfile = h('textarea', { name: 'dockerfile', rows: 8, required: true, id: 'image-dockerfile', spellcheck: false }, 'FROM dockyard/busybox:latest\n');
  const files = h('input', { type: 'file', name: 'attachments', multiple: true });
  const recent = (): string[] => JSON.parse(sessionStorage.getItem(BUILDS_KEY) ?? '[]') as string[];
  replace(
    main,
    h('h1', null, 'Images (Kabuto)'),
    list,
    h('h2', null, 'Build an image from a Dockerfile'),
    form({ class: 'card wide', id: 'image-form' }, [field('Name', name), field('Dockerfile', dockerfile), field('Attachments (build context)', files)], 'Build', async () => {
      const body = new FormData();
      body.set('name', name.value);
      body.set('dockerfile', dockerfile.value);
      for (const f of files.files ?? []) body.append('attachments', f, f.name);
      const { build_id } = await sendForm<{ build_id: string }>('POST', '/image', body);
      sessionStorage.setItem(BUILDS_KEY, JSON.stringify([build_id, ...recent()].slice(0, 10)));
      await load();
    }),
    h('h2', null, 'Recent image builds'),
    builds,
  );
  const load = async () => {
    try {
      const images = values<Image>(await getJson('/image'));
      replace(list, table(images, { Id: (i) => i.id, Name: (i) => i.name, Created: (i) => i.creation_date ?? '', Dockerfile: (i) => h('code', { class: 'clip' }, i.dockerfile ?? '') }, 'No images yet.'));
      const states = await Promise.all(
        recent().map(async (build) => ({ build, ...(await getJson<ImageBuild>(`/image/build/${build}`).catch((e: Error): ImageBuild => ({ state: 'unknown', error: e.message }))) })),
      );
      replace(
        builds,
        table(states, {
          Build: (b) => h('code', null, b.build),
          State: (b) => stateBadge(b.state),
          Image: (b) => (b.id !== undefined ? String(b.id) : ''),
          Output: (b) => h('details', null, h('summary', null, b.error ?? 'output'), h('pre', { class: 'log' }, (b.output ?? []).join('\n'))),
        }, 'No image builds from this browser session.'),
      );
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.build.>'], load));
}

export async function pipelinesPage({ main, onLeave }: PageContext) {
  const list = h('div', { id: 'pipelines' });
  const name = h('input', { name: 'name', required: true, id: 'pipeline-name' });
  replace(
    main,
    h('h1', null, 'Pipelines'),
    form({ class: 'inline', id: 'pipeline-form' }, [field('New pipeline', name)], 'Create', async () => {
      const { id } = await sendForm<{ id: number }>('POST', '/pipeline', new URLSearchParams({ name: name.value }));
      location.hash = `#/pipelines/${id}`;
    }),
    list,
  );
  const load = async () => {
    try {
      const pipelines = values<Pipeline>(await getJson('/pipeline'));
      replace(list, table(pipelines, { Pipeline: (p) => link(`#/pipelines/${p.id}`, `#${p.id} ${p.name}`), Created: (p) => p.creation_date ?? '', Jobs: (p) => p.jobs.length }, 'No pipelines yet.'));
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.execution.>'], load));
}

const jobHref = (pipeline: string | number, job: number) => `#/pipelines/${pipeline}/jobs/${job}`;

function usage(job: Job) {
  return `${job.used_cpu != null ? `${Number(job.used_cpu).toFixed(2)} s CPU` : '—'} · ${job.used_memory != null ? bytes(job.used_memory) : '—'} mem · ${job.used_io != null ? bytes(job.used_io) : '—'} io`;
}

export async function pipelinePage({ main, params, onLeave }: PageContext) {
  const [pid] = params;
  const head = h('div', { id: 'pipeline-head' });
  const jobs = h('div', { id: 'jobs' });
  const command = h('input', { name: 'command', required: true, id: 'job-command', placeholder: 'echo hello > /outbox/hello.txt' });
  const imageId = h('input', { name: 'image_id', required: true, id: 'job-image', value: 'dockyard/busybox:latest' });
  const files = h('input', { type: 'file', name: 'attachments', multiple: true, id: 'job-files' });
  replace(
    main,
    head,
    jobs,
    h('h2', null, 'Add a job'),
    form(
      { class: 'card wide', id: 'job-form' },
      [field('Command', command, 'Runs in the image with the attachments in /inbox; what it writes to /outbox is the result.'), field('Image (an image id, or a name like dockyard/busybox:latest)', imageId), field('Attachments', files)],
      'Add job',
      async (_d, f) => {
        const body = new FormData();
        body.set('command', command.value);
        body.set('image_id', imageId.value);
        for (const file of files.files ?? []) body.append('attachments', file, file.name);
        await sendForm('POST', `/pipeline/${pid}/job`, body);
        f.reset();
        imageId.value = body.get('image_id') as string;
        await load();
      },
    ),
  );
  const load = async () => {
    try {
      const p = (await getJson<Record<string, Pipeline>>(`/pipeline/${pid}`))[pid];
      const details = await Promise.all(p.jobs.map(async ({ id }) => (await getJson<Record<string, Job>>(`/pipeline/${pid}/job/${id}`))[String(id)]));
      replace(
        head,
        h('h1', null, `Pipeline #${p.id} ${p.name}`),
        h(
          'div',
          { class: 'actions' },
          button('Submit pipeline', async () => {
            await call(`/pipeline/${pid}/submit`, { method: 'POST' });
            await load();
          }, { id: 'submit-pipeline' }),
          button('Delete pipeline', async () => {
            if (!confirm('Delete this pipeline and its jobs?')) return;
            await call(`/pipeline/${pid}`, { method: 'DELETE' });
            location.hash = '#/pipelines';
          }, { class: 'danger' }),
        ),
      );
      replace(
        jobs,
        table(details, {
          Job: (j) => link(jobHref(pid, j.id), `#${j.id}`, { class: 'job-link' }),
          Command: (j) => h('code', null, j.command),
          State: (j) => stateBadge(j.state),
          Usage: (j) => usage(j),
        }, 'No jobs yet: add one below.'),
      );
    } catch (err) {
      replace(head, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.execution.>'], load));
}

export async function jobPage({ main, params, onLeave }: PageContext) {
  const [pid, jid] = params;
  const info = h('div', { id: 'job-info' });
  const logBox = h('pre', { class: 'log', id: 'job-log' });
  replace(main, h('p', null, link(`#/pipelines/${pid}`, `← Pipeline #${pid}`)), h('h1', null, `Job #${jid}`), info, h('h2', null, 'Log (live)'), logBox);
  const load = async () => {
    try {
      const job = (await getJson<Record<string, Job>>(`/pipeline/${pid}/job/${jid}`))[jid];
      const finished = ['done', 'failed', 'killed'].includes(job.state);
      replace(
        info,
        h(
          'dl',
          { class: 'kv' },
          h('dt', null, 'state'),
          h('dd', { id: 'job-state' }, stateBadge(job.state)),
          job.reason ? [h('dt', null, 'reason'), h('dd', null, job.reason)] : null,
          h('dt', null, 'command'),
          h('dd', null, h('code', null, job.command)),
          h('dt', null, 'image'),
          h('dd', null, String(job.image?.id ?? '')),
          h('dt', null, 'resources'),
          h('dd', { id: 'job-usage' }, usage(job)),
          h('dt', null, 'created'),
          h('dd', null, job.creation_date ?? ''),
        ),
        h(
          'div',
          { class: 'actions' },
          job.state === 'done' ? button('Download result (zip)', () => download(`/pipeline/${pid}/job/${jid}?result`, `job-${jid}-result.zip`), { id: 'download-result' }) : null,
          !finished ? button('Kill', async () => {
            await call(`/pipeline/${pid}/job/${jid}/kill`, { method: 'POST' });
            await load();
          }, { class: 'danger', id: 'kill' }) : null,
        ),
        rawJson(job),
      );
    } catch (err) {
      replace(info, errorBox(err));
    }
  };
  // The log: Kabuto's SSE endpoint sends stored lines, then live ones, then `end`.
  const controller = new AbortController();
  let lastLog: string | undefined;
  const follow = async (attempt: number): Promise<void> => {
    let ended = false;
    await streamSse(`/execution/${jid}/logs/stream`, controller.signal, (m) => {
      if (m.event === 'log') {
        lastLog = m.id ?? lastLog;
        const line = (JSON.parse(m.data) as { logline: string }).logline;
        logBox.append(h('div', { class: 'line' }, line));
        logBox.scrollTop = logBox.scrollHeight;
      } else if (m.event === 'end') {
        ended = true;
        void load();
      }
    }, lastLog ? { 'last-event-id': lastLog } : {}).catch((err) => {
      if (!controller.signal.aborted) logBox.append(h('div', { class: 'line muted' }, `[${(err as Error).message}]`));
    });
    if (!ended && !controller.signal.aborted && attempt < 20) {
      await new Promise((r) => setTimeout(r, 1000));
      return follow(attempt + 1);
    }
  };
  void follow(0);
  onLeave(() => controller.abort());
  await load();
  onLeave(live(['events.execution.>'], load));
}
