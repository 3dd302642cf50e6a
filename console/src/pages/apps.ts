import { ApiError, call, getJson, sendJson, streamText } from '../api.js';
import { live } from '../live.js';
import type { PageContext } from '../main.js';
import { button, errorBox, field, form, h, link, rawJson, replace, stateBadge, table } from '../ui.js';

interface App {
  namespace: string;
  name: string;
  version: string;
  owner?: string;
  description?: string;
  frozen?: boolean;
  time_created?: string;
  source?: Record<string, unknown>;
  [k: string]: unknown;
}
interface Build {
  number: number;
  building: boolean;
  result: string | null;
  timestamp?: number;
  duration?: number;
  image?: string;
  digest?: string;
  platforms?: { platform: string; building: boolean; result: string | null; digest?: string | null; error?: string | null }[];
}
interface Grant {
  grantee: string;
  granteeType: string;
  permission: string;
  resourceName: string;
  resourceType: string;
}

const appHref = (a: { namespace: string; name: string; version: string }) => `#/apps/${encodeURIComponent(a.namespace)}/${encodeURIComponent(a.name)}/${encodeURIComponent(a.version)}`;

export async function appsPage({ main, onLeave }: PageContext) {
  const list = h('div', { id: 'apps' });
  const nsBox = h('div', { id: 'namespaces' });
  replace(main, h('h1', null, 'Apps'), h('p', null, link('#/submit', 'Submit an app version →')), list, h('h2', null, 'Namespaces'), nsBox);
  const load = async () => {
    try {
      const [apps, namespaces] = await Promise.all([
        getJson<{ data: App[]; pagination?: unknown }>('/apps?limit=500'),
        getJson<{ id: string; owner_id?: string }[]>('/namespaces').catch(() => []),
      ]);
      replace(
        list,
        table(apps.data ?? [], {
          App: (a) => link(appHref(a), `${a.namespace}/${a.name}:${a.version}`),
          Owner: (a) => a.owner ?? '',
          Description: (a) => a.description ?? '',
          Frozen: (a) => (a.frozen ? 'frozen' : ''),
        }),
      );
      replace(nsBox, table(namespaces, { Namespace: (n) => n.id, Owner: (n) => n.owner_id ?? '' }, 'No namespaces.'));
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  await load();
  onLeave(live(['events.registry.>'], load));
}

const EXAMPLE = `description: my app
source:
  url: https://github.com/example/app.git
  branch: main
  architectures: [linux/amd64]
`;

export function submitPage({ main }: PageContext) {
  const ns = h('input', { name: 'namespace', required: true, id: 'submit-namespace', placeholder: 'sage' });
  const repo = h('input', { name: 'repository', required: true, id: 'submit-repository', placeholder: 'simple' });
  const version = h('input', { name: 'version', required: true, id: 'submit-version', placeholder: '1.0' });
  const spec = h('textarea', { name: 'spec', rows: 14, id: 'submit-spec', spellcheck: false }, EXAMPLE);
  const force = h('input', { type: 'checkbox', name: 'force', id: 'submit-force' });
  replace(
    main,
    h('h1', null, 'Submit an app version'),
    form(
      { class: 'card wide', id: 'submit-form' },
      [
        h('div', { class: 'row' }, field('Namespace', ns), field('Repository', repo), field('Version', version)),
        field('App spec (YAML or JSON)', spec, 'The source is cloned and its commit recorded. Build it from the app page.'),
        h('label', { class: 'check' }, force, ' Overwrite an existing version (force)'),
      ],
      'Submit',
      async () => {
        const text = spec.value;
        const path = `/apps/${encodeURIComponent(ns.value)}/${encodeURIComponent(repo.value)}/${encodeURIComponent(version.value)}`;
        // The registry takes the spec as YAML or JSON text.
        const res = await call(`${path}${force.checked ? '?force=true' : ''}`, {
          method: 'POST',
          headers: { 'content-type': text.trim().startsWith('{') ? 'application/json' : 'application/yaml' },
          body: text,
        });
        location.hash = appHref((await res.json()) as App);
      },
    ),
  );
}

export async function appPage({ main, params, onLeave }: PageContext) {
  const [ns, repo, version] = params;
  const enc = `${encodeURIComponent(ns)}/${encodeURIComponent(repo)}/${encodeURIComponent(version)}`;
  const info = h('div', { id: 'app-info' });
  const buildBox = h('div', { id: 'build' });
  const logBox = h('pre', { class: 'log', id: 'build-log' });
  const grantsBox = h('div', { id: 'grants' });
  replace(
    main,
    h('h1', null, `${ns}/${repo}:${version}`),
    info,
    h('h2', null, 'Build'),
    buildBox,
    h('h3', null, 'Build log'),
    logBox,
    h('h2', null, 'Permissions'),
    grantsBox,
  );

  let app: App;
  const loadApp = async () => {
    app = await getJson<App>(`/apps/${enc}`);
    replace(
      info,
      h(
        'dl',
        { class: 'kv' },
        ['owner', 'description', 'frozen', 'time_created', 'time_last_updated'].filter((k) => app[k] !== undefined).map((k) => [h('dt', null, k), h('dd', null, String(app[k]))]),
        h('dt', null, 'source'),
        h('dd', null, h('code', null, String(app.source?.url ?? '')), app.source?.branch ? ` (branch ${String(app.source.branch)})` : '', app.source?.commit ? ` @ ${String(app.source.commit).slice(0, 12)}` : ''),
      ),
      h(
        'div',
        { class: 'actions' },
        button(app.frozen ? 'Unfreeze' : 'Freeze', async () => {
          await call(`/apps/${enc}?frozen=${app.frozen ? 'false' : 'true'}`, { method: 'PUT' });
          await loadApp();
        }, { id: 'freeze' }),
        button('Delete version', async () => {
          if (!confirm(`Delete ${ns}/${repo}:${version}?`)) return;
          await call(`/apps/${enc}`, { method: 'DELETE' });
          location.hash = '#/apps';
        }, { class: 'danger', id: 'delete' }),
      ),
      rawJson(app, 'App spec'),
    );
  };

  // The build log follows the latest build (?follow=true streams until it ends).
  let following: AbortController | undefined;
  let followedNumber = -1;
  const follow = (number: number) => {
    if (number === followedNumber) return;
    followedNumber = number;
    following?.abort();
    following = new AbortController();
    logBox.textContent = '';
    void streamText(`/builds/${enc}/logs?follow=true`, following.signal, (text) => {
      logBox.textContent += text;
      logBox.scrollTop = logBox.scrollHeight;
    }).catch((err) => (logBox.textContent += `\n[${(err as Error).message}]`));
  };
  onLeave(() => following?.abort());

  const loadBuild = async () => {
    let build: Build | null = null;
    try {
      build = await getJson<Build>(`/builds/${enc}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) return replace(buildBox, errorBox(err));
    }
    const start = button('Build', async () => {
      await call(`/builds/${enc}`, { method: 'POST' });
      followedNumber = -1;
      await loadBuild();
    }, { id: 'start-build' });
    if (!build) return replace(buildBox, h('p', { class: 'muted' }, 'Never built.'), start);
    const status = build.building ? (build.result ?? 'BUILDING') : (build.result ?? 'QUEUED');
    replace(
      buildBox,
      h(
        'dl',
        { class: 'kv' },
        h('dt', null, 'build'),
        h('dd', null, `#${build.number} `, stateBadge(status)),
        build.image ? [h('dt', null, 'image'), h('dd', null, h('code', { id: 'build-image' }, build.image))] : null,
        build.digest ? [h('dt', null, 'digest'), h('dd', null, h('code', { id: 'build-digest' }, build.digest))] : null,
        build.duration ? [h('dt', null, 'duration'), h('dd', null, `${(build.duration / 1000).toFixed(1)} s`)] : null,
      ),
      table(build.platforms ?? [], {
        Platform: (p) => p.platform,
        State: (p) => stateBadge(p.building ? 'BUILDING' : (p.result ?? 'QUEUED')),
        Digest: (p) => h('code', null, p.digest ?? ''),
        Error: (p) => p.error ?? '',
      }),
      h(
        'div',
        { class: 'actions' },
        build.building
          ? button('Abort', async () => {
              await call(`/builds/${enc}`, { method: 'DELETE' });
              await loadBuild();
            }, { class: 'danger' })
          : start,
      ),
    );
    follow(build.number);
  };

  const loadGrants = async () => {
    try {
      const grants = await getJson<Grant[]>(`/permissions/${encodeURIComponent(ns)}/${encodeURIComponent(repo)}`);
      const change = (body: Record<string, string>) => sendJson('PUT', `/permissions/${encodeURIComponent(ns)}/${encodeURIComponent(repo)}`, body).then(loadGrants);
      const grantee = h('input', { name: 'grantee', required: true, placeholder: 'login, group or AllUsers' });
      const type = h('select', { name: 'granteeType' }, h('option', null, 'USER'), h('option', null, 'GROUP'));
      const perm = h('select', { name: 'permission' }, ['READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL'].map((p) => h('option', null, p)));
      replace(
        grantsBox,
        table(grants, {
          Grantee: (g) => g.grantee,
          Type: (g) => g.granteeType,
          Permission: (g) => g.permission,
          Resource: (g) => `${g.resourceType} ${g.resourceName}`,
          '': (g) => button('Remove', () => change({ operation: 'delete', granteeType: g.granteeType, grantee: g.grantee, permission: g.permission }), { class: 'small' }),
        }),
        form({ class: 'inline', id: 'grant-form' }, [type, grantee, perm], 'Grant', async () => {
          await change({ operation: 'add', granteeType: type.value, grantee: grantee.value, permission: perm.value });
        }),
        h('p', null, button('Make public (AllUsers READ)', () => change({ operation: 'add', granteeType: 'GROUP', grantee: 'AllUsers', permission: 'READ' }), { class: 'small' })),
      );
    } catch (err) {
      replace(grantsBox, errorBox(err));
    }
  };

  await loadApp();
  await Promise.all([loadBuild(), loadGrants()]);
  onLeave(live(['events.build.>', 'events.registry.>', 'events.permissions.grant.>'], () => Promise.all([loadBuild(), loadApp().catch(() => undefined)]).then(() => undefined)));
}
