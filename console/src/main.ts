import './style.css';
import { ApiError, auth, call, getJson, sendForm, type Identity } from './api.js';
import { liveStatus } from './live.js';
import { h, link, replace, errorBox } from './ui.js';
import { appsPage, appPage, submitPage } from './pages/apps.js';
import { imagesPage, pipelinesPage, pipelinePage, jobPage } from './pages/kabuto.js';
import { cachitoPage, cachitoRequestPage } from './pages/cachito.js';
import { processesPage, processPage, baseImagesPage } from './pages/ree.js';
import { adminPage, tokensPage } from './pages/admin.js';

/** What a page gets: its route parameters, where to render, and a place to register clean-ups. */
export interface PageContext {
  params: string[];
  main: HTMLElement;
  onLeave(fn: () => void): void;
}
type Page = (ctx: PageContext) => Promise<void> | void;

const routes: [RegExp, Page][] = [
  [/^\/signin$/, signInPage],
  [/^\/apps$/, appsPage],
  [/^\/submit$/, submitPage],
  [/^\/apps\/([^/]+)\/([^/]+)\/([^/]+)$/, appPage],
  [/^\/images$/, imagesPage],
  [/^\/pipelines$/, pipelinesPage],
  [/^\/pipelines\/(\d+)$/, pipelinePage],
  [/^\/pipelines\/(\d+)\/jobs\/(\d+)$/, jobPage],
  [/^\/cachito$/, cachitoPage],
  [/^\/cachito\/(\d+)$/, cachitoRequestPage],
  [/^\/processes$/, processesPage],
  [/^\/processes\/([^/]+)$/, processPage],
  [/^\/base-images$/, baseImagesPage],
  [/^\/tokens$/, tokensPage],
  [/^\/admin$/, adminPage],
];

const NAV: [string, string][] = [
  ['#/apps', 'Apps'],
  ['#/submit', 'Submit'],
  ['#/images', 'Images'],
  ['#/pipelines', 'Pipelines'],
  ['#/cachito', 'Cache requests'],
  ['#/processes', 'Processes'],
  ['#/base-images', 'Base images'],
  ['#/tokens', 'Tokens'],
];

let leaving: (() => void)[] = [];

function header() {
  const top = document.getElementById('top')!;
  const liveDot = h('span', { class: `live ${liveStatus.mode}`, title: 'Live updates', id: 'live' }, liveStatus.mode === 'off' ? '' : `live: ${liveStatus.mode}`);
  liveStatus.onChange = (mode) => {
    liveDot.className = `live ${mode}`;
    liveDot.textContent = mode === 'off' ? '' : `live: ${mode}`;
  };
  const me = auth.me;
  const current = location.hash.split('/').slice(0, 2).join('/');
  replace(
    top,
    h(
      'nav',
      null,
      link('#/apps', h('strong', null, 'Dockyard'), { class: 'brand' }),
      me ? [...NAV, ...(me.admin ? ([['#/admin', 'Admin']] as [string, string][]) : [])].map(([href, text]) => link(href, text, { class: href === current ? 'active' : '' })) : null,
      h('span', { class: 'spacer' }),
      liveDot,
      me
        ? [
            h('span', { class: 'who', id: 'who' }, me.login, me.admin ? ' (admin)' : ''),
            h('button', { type: 'button', class: 'link', id: 'signout', on: { click: () => void signOut() } }, 'Sign out'),
          ]
        : link('#/signin', 'Sign in'),
    ),
  );
}

async function whoami(): Promise<Identity | null> {
  try {
    const me = await getJson<Identity & { login?: string }>('/auth/whoami');
    return me?.login && me.login !== 'anonymous' && me.id ? me : null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401 && auth.token) auth.setToken(''); // a stale token
    return null;
  }
}

async function signOut() {
  auth.setToken('');
  await call('/logout', { method: 'POST' }).catch(() => undefined);
  auth.me = null;
  location.hash = '#/signin';
}

function signInPage({ main }: PageContext) {
  const status = h('div', { class: 'status' });
  const done = async () => {
    auth.me = await whoami();
    if (!auth.me) throw new Error('Signed in, but the gateway does not know the identity');
    location.hash = sessionStorage.getItem('dockyard.after') ?? '#/apps';
    sessionStorage.removeItem('dockyard.after');
  };
  const run = (fn: () => Promise<void>) => (e: Event) => {
    e.preventDefault();
    replace(status);
    fn().catch((err) => replace(status, errorBox(err)));
  };
  const login = h('input', { name: 'login', autocomplete: 'username', required: true, id: 'login' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, id: 'password' });
  const token = h('input', { name: 'token', autocomplete: 'off', required: true, id: 'token', placeholder: 'API token' });
  replace(
    main,
    h('h1', null, 'Sign in'),
    h(
      'div',
      { class: 'cols' },
      h(
        'form',
        {
          class: 'card',
          id: 'password-form',
          on: {
            submit: run(async () => {
              auth.setToken('');
              await sendForm('POST', '/login', new URLSearchParams({ login: login.value, password: password.value }));
              await done();
            }),
          },
        },
        h('h2', null, 'Login and password'),
        h('label', { class: 'field' }, h('span', null, 'Login'), login),
        h('label', { class: 'field' }, h('span', null, 'Password'), password),
        h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
        h('small', { class: 'muted' }, 'A session cookie (Kabuto) is kept by the browser.'),
      ),
      h(
        'form',
        {
          class: 'card',
          id: 'token-form',
          on: {
            submit: run(async () => {
              auth.setToken(token.value.trim().replace(/^(bearer|sage|static)\s+/i, ''));
              await done();
            }),
          },
        },
        h('h2', null, 'API token'),
        h('label', { class: 'field' }, h('span', null, 'Token'), token),
        h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Use token')),
        h('small', { class: 'muted' }, 'Kept in this browser (localStorage) and sent as Authorization: Bearer.'),
      ),
    ),
    status,
  );
}

async function render() {
  for (const fn of leaving.splice(0)) fn();
  const main = document.getElementById('main')!;
  const path = location.hash.replace(/^#/, '') || '/apps';
  if (!auth.me && path !== '/signin') {
    auth.me = await whoami();
    if (!auth.me) {
      sessionStorage.setItem('dockyard.after', location.hash || '#/apps');
      location.hash = '#/signin';
      return;
    }
  }
  header();
  for (const [pattern, page] of routes) {
    const m = pattern.exec(path);
    if (!m) continue;
    const ctx: PageContext = { params: m.slice(1).map(decodeURIComponent), main, onLeave: (fn) => leaving.push(fn) };
    try {
      await page(ctx);
    } catch (err) {
      replace(main, errorBox(err));
    }
    return;
  }
  replace(main, h('h1', null, 'Not found'), h('p', null, 'No page at ', h('code', null, path), '. ', link('#/apps', 'Go to the apps.')));
}

window.addEventListener('hashchange', () => void render());
void render();
