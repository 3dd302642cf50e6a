import { auth, call, getJson, sendJson } from '../api.js';
import type { PageContext } from '../main.js';
import { button, errorBox, field, form, h, replace, table } from '../ui.js';

interface Token {
  id: string;
  name: string;
  login: string;
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}
interface User {
  id: string;
  login: string;
  email: string | null;
  admin: boolean;
  approved: boolean;
  confirmed: boolean;
  disabled: boolean;
  groups: string[];
}
interface Group {
  name: string;
  description?: string | null;
  members: string[];
}

export async function tokensPage({ main }: PageContext) {
  const list = h('div', { id: 'tokens' });
  const created = h('div', { id: 'token-created' });
  const name = h('input', { name: 'name', required: true, id: 'token-name' });
  replace(
    main,
    h('h1', null, 'API tokens'),
    h('p', { class: 'muted' }, 'Tokens act as you on every API (Authorization: Bearer <token>, or as the password of docker login). The secret is shown once.'),
    list,
    form({ class: 'inline', id: 'token-form' }, [field('New token name', name)], 'Create token', async () => {
      const t = await sendJson<Token & { token: string }>('POST', '/auth/tokens', { name: name.value });
      replace(created, h('p', { class: 'notice' }, 'Copy it now: ', h('code', { id: 'new-token' }, t.token)));
      await load();
    }),
    created,
  );
  const load = async () => {
    try {
      const tokens = await getJson<Token[]>('/auth/tokens');
      replace(
        list,
        table(tokens, {
          Name: (t) => t.name,
          Prefix: (t) => h('code', null, t.prefix),
          Created: (t) => t.createdAt,
          'Last used': (t) => t.lastUsedAt ?? '—',
          Revoked: (t) => t.revokedAt ?? '',
          '': (t) =>
            t.revokedAt
              ? ''
              : button('Revoke', async () => {
                  await call(`/auth/tokens/${t.id}`, { method: 'DELETE' });
                  await load();
                }, { class: 'small danger' }),
        }, 'No tokens.'),
      );
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  await load();
}

export async function adminPage({ main }: PageContext) {
  if (!auth.me?.admin) return replace(main, h('h1', null, 'Admin'), errorBox('Only an admin sees this page.'));
  const users = h('div', { id: 'users' });
  const groups = h('div', { id: 'groups' });
  const login = h('input', { name: 'login', required: true });
  const email = h('input', { name: 'email', type: 'email' });
  const password = h('input', { name: 'password', type: 'password' });
  const gname = h('input', { name: 'name', required: true });
  const member = h('input', { name: 'login', required: true, placeholder: 'login' });
  const mgroup = h('input', { name: 'group', required: true, placeholder: 'group' });
  replace(
    main,
    h('h1', null, 'Admin'),
    h('h2', null, 'Users'),
    users,
    form({ class: 'inline' }, [field('Login', login), field('Email', email), field('Password', password)], 'Create user', async () => {
      await sendJson('POST', '/auth/users', { login: login.value, ...(email.value ? { email: email.value } : {}), ...(password.value ? { password: password.value } : {}), approved: true });
      await load();
    }),
    h('h2', null, 'Groups'),
    groups,
    form({ class: 'inline' }, [field('New group', gname)], 'Create group', async () => {
      await sendJson('POST', '/auth/groups', { name: gname.value });
      await load();
    }),
    form({ class: 'inline' }, [field('Add member', member), field('to group', mgroup)], 'Add', async () => {
      await call(`/auth/groups/${encodeURIComponent(mgroup.value)}/members/${encodeURIComponent(member.value)}`, { method: 'PUT' });
      await load();
    }),
    h('h2', null, "A user's tokens"),
    tokenLookup(),
  );
  const patch = (u: User, body: Partial<User>) => sendJson('PATCH', `/auth/users/${encodeURIComponent(u.login)}`, body).then(load);
  const load = async () => {
    try {
      const [us, gs] = await Promise.all([getJson<User[]>('/auth/users'), getJson<Group[]>('/auth/groups')]);
      replace(
        users,
        table(us, {
          Login: (u) => u.login,
          Email: (u) => u.email ?? '',
          Admin: (u) => (u.admin ? 'admin' : ''),
          Approved: (u) => (u.approved ? 'yes' : button('Approve', () => patch(u, { approved: true }), { class: 'small' })),
          Disabled: (u) => button(u.disabled ? 'Enable' : 'Disable', () => patch(u, { disabled: !u.disabled }), { class: 'small' }),
          Groups: (u) => u.groups.join(', '),
        }),
      );
      replace(
        groups,
        table(gs, {
          Group: (g) => g.name,
          Members: (g) =>
            g.members.map((m) =>
              h('span', { class: 'chip' }, m, ' ', button('×', async () => {
                await call(`/auth/groups/${encodeURIComponent(g.name)}/members/${encodeURIComponent(m)}`, { method: 'DELETE' });
                await load();
              }, { class: 'small link', title: `Remove ${m}` })),
            ),
          '': (g) => button('Delete', async () => {
            if (!confirm(`Delete group ${g.name}?`)) return;
            await call(`/auth/groups/${encodeURIComponent(g.name)}`, { method: 'DELETE' });
            await load();
          }, { class: 'small danger' }),
        }),
      );
    } catch (err) {
      replace(users, errorBox(err));
    }
  };
  await load();
}

function tokenLookup() {
  const out = h('div');
  const login = h('input', { name: 'login', required: true, placeholder: 'login' });
  return h(
    'div',
    null,
    form({ class: 'inline' }, [field('Login', login)], 'Show tokens', async () => {
      const tokens = await getJson<Token[]>(`/auth/tokens?login=${encodeURIComponent(login.value)}`);
      replace(out, table(tokens, {
        Name: (t) => t.name,
        Prefix: (t) => h('code', null, t.prefix),
        'Last used': (t) => t.lastUsedAt ?? '—',
        Revoked: (t) => t.revokedAt ?? '',
        '': (t) => (t.revokedAt ? '' : button('Revoke', async () => {
          await call(`/auth/tokens/${t.id}`, { method: 'DELETE' });
          out.replaceChildren();
        }, { class: 'small danger' })),
      }, 'No tokens.'));
    }),
    out,
  );
}
