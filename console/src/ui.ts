/** A few DOM helpers: the console is plain TypeScript, no framework. */

type Child = Node | string | number | null | undefined | false | Child[];
type Props = Record<string, unknown> & { on?: Record<string, (e: Event) => void> };

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props | null = null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (key === 'on') for (const [ev, fn] of Object.entries(value as Record<string, (e: Event) => void>)) el.addEventListener(ev, fn);
    else if (value === false || value === null || value === undefined) continue;
    else if (key in el && typeof value !== 'string') (el as unknown as Record<string, unknown>)[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el: Element, ...children: Child[]) {
  el.replaceChildren();
  append(el, children);
}

export const link = (href: string, text: Child, props: Props = {}) => h('a', { href, ...props }, text);

export function stateBadge(state: unknown) {
  const s = String(state ?? 'unknown');
  const kind = /success|done|processed|complete|true/i.test(s)
    ? 'ok'
    : /fail|error|killed|abort|stale/i.test(s)
      ? 'bad'
      : /run|build|progress|queue|pending|processing|in_/i.test(s)
        ? 'busy'
        : 'idle';
  return h('span', { class: `badge ${kind}`, 'data-state': s }, s);
}

export function rawJson(value: unknown, summary = 'Raw JSON') {
  return h('details', null, h('summary', null, summary), h('pre', { class: 'json' }, JSON.stringify(value, null, 2)));
}

/** Rows of objects as a table; `cols` maps a heading to a cell renderer. */
export function table<T>(rows: T[], cols: Record<string, (row: T) => Child>, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h(
    'table',
    null,
    h('thead', null, h('tr', null, Object.keys(cols).map((c) => h('th', null, c)))),
    h(
      'tbody',
      null,
      rows.map((row) => h('tr', null, Object.values(cols).map((render) => h('td', null, render(row))))),
    ),
  );
}

/** An object keyed by id (Kabuto's shape) or an array, as an array. */
export function values<T>(v: unknown): T[] {
  if (Array.isArray(v)) return v as T[];
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    for (const key of ['data', 'items', 'processes', 'results']) if (Array.isArray(o[key])) return o[key] as T[];
    return Object.values(o) as T[];
  }
  return [];
}

export function errorBox(err: unknown) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err));
}

/** A form whose submit runs `action`; errors show under it, the button is disabled meanwhile. */
export function form(props: Props, fields: Child[], label: string, action: (data: FormData, form: HTMLFormElement) => Promise<void>) {
  const status = h('div', { class: 'status' });
  const button = h('button', { type: 'submit' }, label);
  const f = h('form', { ...props }, fields, h('div', { class: 'actions' }, button), status);
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    button.disabled = true;
    replace(status);
    action(new FormData(f), f)
      .catch((err) => replace(status, errorBox(err)))
      .finally(() => (button.disabled = false));
  });
  return f;
}

export function field(label: string, input: HTMLElement, hint?: string) {
  return h('label', { class: 'field' }, h('span', null, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
}

export function button(text: string, action: () => Promise<void> | void, props: Props = {}) {
  const b = h('button', { type: 'button', ...props }, text);
  b.addEventListener('click', () => {
    b.disabled = true;
    Promise.resolve(action())
      .catch((err) => alert(err instanceof Error ? err.message : String(err)))
      .finally(() => (b.disabled = false));
  });
  return b;
}

export function bytes(n: unknown): string {
  const v = Number(n);
  if (!Number.isFinite(v)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i ? 1 : 0)} ${units[i]}`;
}
