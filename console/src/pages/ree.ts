import { call, download, getJson, sendForm } from '../api.js';
import { live } from '../live.js';
import type { PageContext } from '../main.js';
import { button, errorBox, field, form, h, link, rawJson, replace, stateBadge, table, values } from '../ui.js';

interface Proc {
  uuid: string;
  tag?: string;
  status?: string;
  kind?: string;
  created?: string;
  [k: string]: unknown;
}

const KINDS: Record<string, string> = {
  '/api/recording/create': 'Define (record) a project: a zip with its code; answers a pinned definition',
  '/api/recording/build': 'Build a defined project (the zip from a definition)',
  '/api/replay/create': 'Replay a recorded definition',
  '/api/sbom/define': 'SBOM of a project',
};

export async function processesPage({ main, onLeave }: PageContext) {
  const list = h('div', { id: 'processes' });
  const tag = h('input', { name: 'tag', id: 'process-tag' });
  const kind = h('select', { name: 'kind', id: 'process-kind' }, Object.entries(KINDS).map(([v, t]) => h('option', { value: v }, t)));
  const file = h('input', { type: 'file', name: 'file', required: true, accept: '.zip,application/zip', id: 'process-file' });
  replace(
    main,
    h('h1', null, 'Processes (REE)'),
    list,
    h('h2', null, 'Upload a project'),
    form({ class: 'card wide', id: 'process-form' }, [field('Operation', kind), field('Tag', tag), field('Project zip', file)], 'Upload', async () => {
      const body = new FormData();
      if (tag.value) body.set('tag', tag.value);
      const f = file.files?.[0];
      if (!f) throw new Error('Choose a zip file');
      body.set('file', f, f.name);
      const { uuid } = await sendForm<{ uuid: string }>('POST', kind.value, body);
      location.hash = `#/processes/${uuid}`;
    }),
  );
  const load = async () => {
    try {
      const procs = values<Proc>(await getJson('/api/process'));
      replace(list, table(procs, { Process: (p) => link(`#/processes/${p.uuid}`, h('code', null, p.uuid)), Tag: (p) => p.tag ?? '', Status: (p) => stateBadge(p.status) }, 'No processes yet.'));
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.process.>'], load));
}

export async function processPage({ main, params, onLeave }: PageContext) {
  const [uuid] = params;
  const info = h('div', { id: 'process' });
  const logBox = h('pre', { class: 'log', id: 'process-log' });
  replace(main, h('p', null, link('#/processes', '← Processes')), h('h1', null, 'Process ', h('code', null, uuid)), info, h('h2', null, 'Log'), logBox);
  const load = async () => {
    try {
      const p = await getJson<Proc>(`/api/process/status/${uuid}`);
      replace(
        info,
        h('dl', { class: 'kv' }, h('dt', null, 'status'), h('dd', { id: 'process-status' }, stateBadge(p.status)), h('dt', null, 'tag'), h('dd', null, p.tag ?? '')),
        h(
          'div',
          { class: 'actions' },
          p.status === 'processed' ? button('Download result', () => download(`/api/process/download/${uuid}`, `${uuid}.zip`), { id: 'process-download' }) : null,
          button('Download log', () => download(`/api/log/download/${uuid}`, `${uuid}.log`)),
        ),
        rawJson(p),
      );
      logBox.textContent = await (await call(`/api/process/log/${uuid}`)).text().catch(() => '');
    } catch (err) {
      replace(info, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.process.>'], load));
}

export async function baseImagesPage({ main }: PageContext) {
  const images = await getJson<{ name: string; download_endpoint: string }[]>('/api/image/list');
  replace(
    main,
    h('h1', null, 'Base images (REE)'),
    table(images, { Name: (i) => h('code', null, i.name), '': (i) => button('Download (tar)', () => download(i.download_endpoint, `${i.name}.tar`), { class: 'small' }) }, 'No base images.'),
  );
}
