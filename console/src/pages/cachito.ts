import { download, getJson, sendJson } from '../api.js';
import { live } from '../live.js';
import type { PageContext } from '../main.js';
import { button, errorBox, field, form, h, link, rawJson, replace, stateBadge, table, values } from '../ui.js';

interface Req {
  id: number;
  repo: string;
  ref: string;
  state: string;
  state_reason?: string;
  pkg_managers?: string[];
  packages?: { name: string; type: string; version: string; dependencies?: unknown[] }[];
  dependencies?: { name: string; type: string; version: string; dev?: boolean }[];
  updated?: string;
  created?: string;
}

export async function cachitoPage({ main, onLeave }: PageContext) {
  const list = h('div', { id: 'requests' });
  const repo = h('input', { name: 'repo', required: true, placeholder: 'https://github.com/org/repo.git' });
  const ref = h('input', { name: 'ref', required: true, placeholder: '40-hex commit', pattern: '[0-9a-f]{40}' });
  const pms = h('input', { name: 'pkg_managers', placeholder: 'gomod, pip, npm, yarn (empty: detect)' });
  replace(
    main,
    h('h1', null, 'Cache requests (Cachito)'),
    list,
    h('h2', null, 'New request'),
    form({ class: 'card wide', id: 'request-form' }, [field('Repository', repo), field('Commit', ref), field('Package managers', pms)], 'Request', async () => {
      const pkg = pms.value.split(',').map((s) => s.trim()).filter(Boolean);
      const created = await sendJson<Req>('POST', '/api/v1/requests', { repo: repo.value, ref: ref.value, ...(pkg.length ? { pkg_managers: pkg } : {}) });
      location.hash = `#/cachito/${created.id}`;
    }),
  );
  const load = async () => {
    try {
      const reqs = values<Req>(await getJson('/api/v1/requests?per_page=100'));
      replace(list, table(reqs, { Request: (r) => link(`#/cachito/${r.id}`, `#${r.id}`), Repository: (r) => r.repo, Ref: (r) => h('code', null, r.ref.slice(0, 12)), State: (r) => stateBadge(r.state), 'Package managers': (r) => (r.pkg_managers ?? []).join(', ') }, 'No requests yet.'));
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.source-cache.>'], load));
}

export async function cachitoRequestPage({ main, params, onLeave }: PageContext) {
  const [id] = params;
  const info = h('div', { id: 'request' });
  const extra = h('div', { id: 'request-extra' });
  replace(main, h('p', null, link('#/cachito', '← Cache requests')), h('h1', null, `Request #${id}`), info, extra);
  const show = (title: string, path: string) => async () => replace(extra, h('h2', null, title), rawJson(await getJson(path), title));
  const load = async () => {
    try {
      const r = await getJson<Req>(`/api/v1/requests/${id}`);
      const complete = r.state === 'complete';
      replace(
        info,
        h('dl', { class: 'kv' }, h('dt', null, 'state'), h('dd', { id: 'request-state' }, stateBadge(r.state), r.state_reason ? ` ${r.state_reason}` : ''), h('dt', null, 'repository'), h('dd', null, r.repo), h('dt', null, 'ref'), h('dd', null, h('code', null, r.ref))),
        h(
          'div',
          { class: 'actions' },
          complete ? button('Download bundle', () => download(`/api/v1/requests/${id}/download`, `cachito-${id}.tar.gz`)) : null,
          complete ? button('Content manifest', show('Content manifest', `/api/v1/requests/${id}/content-manifest`)) : null,
          complete ? button('SBOM', show('SBOM', `/api/v1/requests/${id}/sbom`)) : null,
          button('Logs', () => download(`/api/v1/requests/${id}/logs`, `cachito-${id}.log`)),
        ),
        h('h2', null, 'Packages'),
        table(r.packages ?? [], { Name: (p) => p.name, Type: (p) => p.type, Version: (p) => p.version, Dependencies: (p) => (p.dependencies ?? []).length }, 'None (yet).'),
        h('h2', null, 'Dependencies'),
        table(r.dependencies ?? [], { Name: (d) => d.name, Type: (d) => d.type, Version: (d) => d.version, Dev: (d) => (d.dev ? 'dev' : '') }, 'None (yet).'),
        rawJson(r),
      );
    } catch (err) {
      replace(info, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.source-cache.>'], load));
}
