// Connected clients (search, disconnect, "and disable the user": a
// kicked device otherwise reconnects at once) and stored sessions
// (remove).

import { del, get, put, query, request, seg, type Pagination, type User } from '../api';
import { checkbox, clear, confirmAction, errorSlot, field, h, modal, run, text, when } from '../dom';
import type { Ctx } from '../main';

interface Client {
  clientId: string;
  username?: string | null;
  address: string;
  listener: string;
  protocolVersion: number;
  connectedSince: number;
  authentication: string;
}

interface Session {
  clientId: string;
  owner?: string | null;
  connected: boolean;
  expiryInterval?: number | null;
  expiresAt?: number | null;
  queued: number;
}

const ROWS = 50;

function pagedList<T>(
  title: string,
  path: string,
  key: string,
  headers: string[],
  row: (item: T, reload: () => Promise<void>) => Node[],
): { el: HTMLElement; load: () => Promise<void> } {
  let page = 1;
  let search = '';
  const input = h('input', { type: 'search', autocomplete: 'off' });
  const go = h('button', { type: 'submit' }, 'Search');
  const refresh = h('button', { type: 'button' }, 'Refresh');
  const slot = errorSlot();
  const body = h('div', { 'aria-live': 'polite' });
  const pager = h('div', { class: 'pager' });
  const load = async () => {
    const reply = await request<Record<string, T[] | Pagination>>('GET', path + query({ pageNumber: page, rowsPerPage: ROWS, search }));
    const items = reply.body[key] as T[];
    const p = reply.body.pagination as Pagination;
    clear(
      body,
      items.length === 0
        ? h('p', { class: 'empty' }, search ? `Nothing matches “${search}”.` : `No ${title.toLowerCase()}.`)
        : h(
            'table',
            null,
            h('thead', null, h('tr', null, headers.map((t) => h('th', { scope: 'col' }, t)))),
            h('tbody', null, items.map((item) => h('tr', null, row(item, load).map((c) => h('td', null, c))))),
          ),
    );
    const pages = Math.max(1, p.totalPages);
    const prev = h('button', { type: 'button', disabled: page <= 1 }, 'Previous page');
    const next = h('button', { type: 'button', disabled: page >= pages }, 'Next page');
    prev.addEventListener('click', () => void run(prev, slot, async () => { page -= 1; await load(); }));
    next.addEventListener('click', () => void run(next, slot, async () => { page += 1; await load(); }));
    clear(pager, prev, h('span', null, `Page ${page} of ${pages} (${p.totalRows})`), next);
  };
  const form = h('form', { class: 'row', role: 'search' }, field(`Search ${title.toLowerCase()}`, input, 'Part of a client id or user name.'), h('div', { class: 'field' }, go), h('div', { class: 'field' }, refresh));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(go, slot, async () => {
      search = input.value.trim();
      page = 1;
      await load();
    });
  });
  refresh.addEventListener('click', () => void run(refresh, slot, load));
  return { el: h('section', null, h('h2', null, title), form, slot, body, pager), load };
}

export async function clientsView(ctx: Ctx): Promise<void> {
  const { access, root } = ctx;
  const parts: HTMLElement[] = [h('h1', null, 'Connected clients and sessions')];
  const loads: (() => Promise<void>)[] = [];
  if (access.may('GET', '/api/clients')) {
    const clients = pagedList<Client>('Connected clients', '/api/clients', 'clients', ['User', 'Client id', 'Address', 'Listener', 'Protocol', 'Since', 'Login', ''], (c, reload) => [
      text(c.username),
      h('code', null, c.clientId),
      text(c.address),
      text(c.listener),
      text(c.protocolVersion === 5 ? 'MQTT 5' : 'MQTT 3.1.1'),
      text(when(c.connectedSince)),
      text(c.authentication),
      access.may('DELETE', `/api/clients/${c.clientId}`)
        ? h('button', { type: 'button', 'aria-label': `Disconnect ${c.clientId}`, onclick: () => void disconnect(ctx, c, reload) }, 'Disconnect')
        : text(''),
    ]);
    parts.push(clients.el);
    loads.push(clients.load);
  }
  if (access.may('GET', '/api/sessions')) {
    const sessions = pagedList<Session>('Sessions', '/api/sessions', 'sessions', ['Client id', 'Owner', 'Connected', 'Expiry', 'Expires', 'Queued', ''], (s, reload) => [
      h('code', null, s.clientId),
      text(s.owner),
      text(s.connected ? 'yes' : 'no'),
      text(s.expiryInterval === null || s.expiryInterval === undefined ? '—' : `${s.expiryInterval} s`),
      text(when(s.expiresAt)),
      text(s.queued),
      access.may('DELETE', `/api/sessions/${s.clientId}`)
        ? h(
            'button',
            {
              type: 'button',
              'aria-label': `Remove session ${s.clientId}`,
              onclick: async () => {
                const t = `End the session ${s.clientId}? Its connection closes, its will is published, and its subscriptions and queued messages go.`;
                if (await confirmAction('Remove session', t, 'Remove session', () => del(`/api/sessions/${seg(s.clientId)}`))) await reload();
              },
            },
            'Remove',
          )
        : text(''),
    ]);
    parts.push(sessions.el);
    loads.push(sessions.load);
  }
  clear(root, parts);
  await Promise.all(loads.map((l) => l()));
}

async function disconnect(ctx: Ctx, c: Client, reload: () => Promise<void>): Promise<void> {
  let user: User | undefined;
  if (c.username && ctx.access.may('GET', '/api/users')) {
    user = (await get<User[]>('/api/users' + query({ 'username[eq]': c.username })))[0];
  }
  const disable = user && user.enabled && user.id !== ctx.access.me.id && ctx.access.may('PUT', `/api/users/${user.id}`)
    ? checkbox(`And disable the user ${user.username} (otherwise the client may reconnect at once)`)
    : null;
  const submit = h('button', { type: 'submit', class: 'danger' }, 'Disconnect');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const slot = errorSlot();
  const form = h(
    'form',
    null,
    h('p', null, 'Disconnect ', h('code', null, c.clientId), c.username ? ` (user ${c.username})` : '', '? Its session stays until it expires.'),
    disable?.el,
    h('div', { class: 'buttons' }, submit, cancel),
    slot,
  );
  const { close } = modal(`Disconnect ${c.clientId}`, form);
  cancel.addEventListener('click', close);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(submit, slot, async () => {
      await del(`/api/clients/${seg(c.clientId)}`);
      // Should the client come back meanwhile, disabling closes it again.
      if (disable?.input.checked && user) await put(`/api/users/${seg(user.id)}`, { enabled: false });
      close();
      await reload();
    });
  });
}
