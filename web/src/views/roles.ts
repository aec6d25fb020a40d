// Roles: the list, create (name, permissions, or a copy of another
// role's), and one role's page (rename, permissions, copy from a role,
// delete).

import { del, get, post, put, seg, type Role } from '../api';
import { clear, confirmAction, errorSlot, field, h, modal, run, select } from '../dom';
import type { Ctx } from '../main';
import { permissionEditor, permissionTable } from './permissions';

export async function rolesView(ctx: Ctx): Promise<void> {
  const roles = await get<Role[]>('/api/roles');
  const add = ctx.access.may('POST', '/api/roles') ? h('button', { type: 'button', class: 'primary' }, 'Add role') : null;
  add?.addEventListener('click', () => createRole(ctx, roles));
  clear(
    ctx.root,
    h('div', { class: 'title' }, h('h1', null, 'Roles'), add),
    roles.length === 0
      ? h('p', { class: 'empty' }, 'No roles.')
      : h(
          'table',
          null,
          h('thead', null, h('tr', null, ['Role', 'Permissions'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            null,
            roles.map((r) =>
              h(
                'tr',
                null,
                h('td', null, h('a', { href: `#/roles/${encodeURIComponent(r.id)}` }, r.name)),
                h('td', null, r.permissions.map((p) => `${p.effect === 'deny' ? 'deny ' : ''}${p.context} ${p.resource} (${p.operation})`).join(', ') || '—'),
              ),
            ),
          ),
        ),
  );
}

/** "Copy permissions from role": a role list and a button that adds that role's permissions. */
function copyFrom(roles: Role[], skip: string | undefined, into: (r: Role) => void): HTMLElement {
  const others = roles.filter((r) => r.id !== skip);
  const from = select(others.map((r) => [r.id, r.name]));
  const button = h('button', { type: 'button' }, 'Copy permissions');
  button.addEventListener('click', () => {
    const role = others.find((r) => r.id === from.value);
    if (role) into(role);
  });
  return h('div', { class: 'row' }, field('Copy permissions from role', from), h('div', { class: 'field' }, button));
}

function createRole(ctx: Ctx, roles: Role[]): void {
  const name = h('input', { type: 'text', autocomplete: 'off', required: true, maxlength: 128 });
  const permissions = permissionEditor([]);
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create role');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const slot = errorSlot();
  const form = h(
    'form',
    null,
    field('Role name', name),
    roles.length ? copyFrom(roles, undefined, (r) => permissions.add(r.permissions)) : null,
    permissions.el,
    h('div', { class: 'buttons' }, submit, cancel),
    slot,
  );
  const { close } = modal('Add role', form);
  cancel.addEventListener('click', close);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(submit, slot, async () => {
      const role = await post<Role>('/api/roles', { name: name.value.trim(), permissions: permissions.get() });
      close();
      ctx.go(`#/roles/${encodeURIComponent(role.id)}`);
    });
  });
  name.focus();
}

export async function roleView(ctx: Ctx, id: string): Promise<void> {
  const base = `/api/roles/${seg(id)}`;
  const role = await get<Role>(base);
  const title = h('div', { class: 'title' }, h('h1', null, `Role ${role.name}`), h('a', { href: '#/roles' }, 'All roles'));
  if (!ctx.access.may('PUT', base)) {
    clear(ctx.root, title, h('h2', null, 'Permissions'), permissionTable(role.permissions));
    return;
  }
  const roles = await get<Role[]>('/api/roles');
  const name = h('input', { type: 'text', autocomplete: 'off', required: true, maxlength: 128, value: role.name });
  const permissions = permissionEditor(role.permissions);
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save changes');
  const slot = errorSlot();
  const form = h(
    'form',
    null,
    field('Role name', name),
    copyFrom(roles, role.id, (r) => permissions.add(r.permissions)),
    permissions.el,
    h('div', { class: 'buttons' }, save),
    slot,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(save, slot, async () => {
      await put(base, { name: name.value.trim(), permissions: permissions.get() });
      await ctx.refreshMe();
      ctx.go(`#/roles/${encodeURIComponent(role.id)}`);
    });
  });
  const remove = ctx.access.may('DELETE', base)
    ? h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            const text = `Delete the role ${role.name}? It is taken away from every user who has it.`;
            if (await confirmAction('Delete role', text, 'Delete role', () => del(base))) ctx.go('#/roles');
          },
        },
        'Delete role',
      )
    : null;
  clear(ctx.root, title, form, remove ? h('div', { class: 'buttons' }, remove) : null);
}
