// Users: a server-side paged list with search, and the create dialog
// (simple: name, password twice, roles; advanced: prefix, grant types,
// MFA enrolment, additional permissions).

import { get, post, query, request, type GrantType, type Role, type User } from '../api';
import { checkbox, clear, errorSlot, field, h, modal, run } from '../dom';
import type { Ctx } from '../main';
import { permissionEditor } from './permissions';

const ROWS = 20;

export async function usersView(ctx: Ctx): Promise<void> {
  const { access, root } = ctx;
  let page = 1;
  let search = '';
  const searchInput = h('input', { type: 'search', autocomplete: 'off' });
  const searchButton = h('button', { type: 'submit' }, 'Search');
  const searchSlot = errorSlot();
  const list = h('div', { 'aria-live': 'polite' });
  const pager = h('div', { class: 'pager' });

  const load = async () => {
    const reply = await request<User[]>('GET', '/api/users' + query({ pageNumber: page, rowsPerPage: ROWS, search }));
    const total = Number(reply.headers.get('x-total-count') ?? reply.body.length);
    const pages = Math.max(1, Math.ceil(total / ROWS));
    clear(
      list,
      reply.body.length === 0
        ? h('p', { class: 'empty' }, search ? `No user name contains “${search}”.` : 'No users.')
        : h(
            'table',
            null,
            h('thead', null, h('tr', null, ['User name', 'Roles', 'Enabled', 'MFA'].map((t) => h('th', { scope: 'col' }, t)))),
            h(
              'tbody',
              null,
              reply.body.map((u) =>
                h(
                  'tr',
                  null,
                  h('td', null, h('a', { href: `#/users/${encodeURIComponent(u.id)}` }, u.username)),
                  h('td', null, u.roles.map((r) => r.name).join(', ') || '—'),
                  h('td', null, u.enabled ? 'yes' : 'no'),
                  h('td', null, u.mfa_is_enrolled ? 'on' : 'off'),
                ),
              ),
            ),
          ),
    );
    const prev = h('button', { type: 'button', disabled: page <= 1 }, 'Previous page');
    const next = h('button', { type: 'button', disabled: page >= pages }, 'Next page');
    const slot = errorSlot();
    prev.addEventListener('click', () => void run(prev, slot, async () => { page -= 1; await load(); }));
    next.addEventListener('click', () => void run(next, slot, async () => { page += 1; await load(); }));
    clear(pager, prev, h('span', null, `Page ${page} of ${pages} (${total} user${total === 1 ? '' : 's'})`), next, slot);
  };

  const searchForm = h('form', { class: 'row', role: 'search' }, field('Search users', searchInput, 'Part of a user name.'), h('div', { class: 'field' }, searchButton), searchSlot);
  searchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(searchButton, searchSlot, async () => {
      search = searchInput.value.trim();
      page = 1;
      await load();
    });
  });

  const add = access.may('POST', '/api/users') ? h('button', { type: 'button', class: 'primary' }, 'Add user') : null;
  add?.addEventListener('click', () => void createUser(ctx, (u) => ctx.go(`#/users/${encodeURIComponent(u.id)}`)));
  clear(root, h('div', { class: 'title' }, h('h1', null, 'Users'), add), searchForm, list, pager);
  await load();
}

/** Roles as checkboxes, or nothing when the user may not read roles. */
export async function roleChoices(ctx: Ctx, chosen: string[], legend = 'Roles'): Promise<{ el: HTMLElement | null; get: () => string[] }> {
  if (!ctx.access.may('GET', '/api/roles')) return { el: null, get: () => chosen };
  const roles = await get<Role[]>('/api/roles');
  const boxes = roles.map((r) => ({ role: r, box: checkbox(r.name, chosen.includes(r.id)) }));
  const el = h(
    'fieldset',
    { class: 'roles' },
    h('legend', null, legend),
    boxes.length ? boxes.map((b) => b.box.el) : h('p', { class: 'empty' }, 'There are no roles.'),
  );
  return { el, get: () => boxes.filter((b) => b.box.input.checked).map((b) => b.role.id) };
}

export function grantTypeChoices(current: GrantType[]): { el: HTMLElement; get: () => GrantType[] } {
  const has = (m: string) => current.length === 0 ? m === 'password' : current.some((g) => g.method === m);
  const pw = checkbox('Password login', has('password'));
  const cert = checkbox('Certificate login', has('certificate'));
  return {
    el: h('fieldset', { class: 'grants' }, h('legend', null, 'May log in with'), pw.el, cert.el),
    get: () => [
      ...(pw.input.checked ? [{ method: 'password' as const, isRequired: false }] : []),
      ...(cert.input.checked ? [{ method: 'certificate' as const, isRequired: false }] : []),
    ],
  };
}

async function createUser(ctx: Ctx, created: (u: User) => void): Promise<void> {
  const username = h('input', { type: 'text', autocomplete: 'off', required: true, minlength: 3, maxlength: 128 });
  const password = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const repeat = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const roles = await roleChoices(ctx, []);
  const advancedToggle = checkbox('Advanced mode');
  const prefix = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const grants = grantTypeChoices([]);
  const enforce = checkbox('Require MFA enrolment at the first sign-in');
  const permissions = permissionEditor([], 'Additional permissions');
  const advanced = h(
    'div',
    { hidden: true, class: 'advanced' },
    field('MQTT publish prefix', prefix, 'Put in front of every topic the user publishes, e.g. plant-1/ (include the trailing /).'),
    grants.el,
    enforce.el,
    permissions.el,
  );
  advancedToggle.input.addEventListener('change', () => (advanced.hidden = !advancedToggle.input.checked));
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create user');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const slot = errorSlot();
  const form = h(
    'form',
    null,
    advancedToggle.el,
    field('User name', username),
    field('Password', password),
    field('Repeat password', repeat),
    roles.el,
    advanced,
    h('div', { class: 'buttons' }, submit, cancel),
    slot,
  );
  const { close } = modal('Add user', form);
  cancel.addEventListener('click', close);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(submit, slot, async () => {
      if (password.value !== repeat.value) throw new Error('The two passwords differ.');
      const body: Record<string, unknown> = { username: username.value.trim(), password: password.value, roles: roles.get() };
      if (advancedToggle.input.checked) {
        body.initialPermissions = permissions.get();
        body.grantTypes = grants.get();
        body.enforceMFAEnrollment = enforce.input.checked;
        if (prefix.value) body.mqttPublishPrefix = prefix.value;
      }
      const user = await post<User>('/api/users', body);
      close();
      created(user);
    });
  });
  username.focus();
}
