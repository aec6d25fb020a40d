// The permission list editor shared by users, roles and the registry:
// each permission with a Remove button, and a row to add one (MQTT or
// HTTP, resource in topic syntax, read/write/readWrite, allow or deny).

import type { Permission } from '../api';
import { clear, errorSlot, field, h, hideError, select, showError, text } from '../dom';

export function describePermission(p: Permission): string {
  const op = { read: 'read', write: 'write', readWrite: 'read and write' }[p.operation];
  return `${p.effect === 'deny' ? 'deny ' : ''}${op} ${p.context.toUpperCase()} ${p.resource}`;
}

export function permissionTable(list: Permission[], extra?: (p: Permission) => Node | string): HTMLElement {
  if (list.length === 0) return h('p', { class: 'empty' }, 'No permissions.');
  return h(
    'table',
    null,
    h('thead', null, h('tr', null, ['Type', 'Resource', 'Access', 'Effect', ...(extra ? [''] : [])].map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      null,
      list.map((p) =>
        h(
          'tr',
          null,
          h('td', null, p.context.toUpperCase()),
          h('td', null, h('code', null, p.resource)),
          h('td', null, text(p.operation)),
          h('td', null, p.effect === 'deny' ? 'deny' : 'allow'),
          extra ? h('td', null, extra(p)) : null,
        ),
      ),
    ),
  );
}

export interface PermissionEditor {
  el: HTMLElement;
  get(): Permission[];
  set(list: Permission[]): void;
  add(list: Permission[]): void;
}

const same = (a: Permission, b: Permission) =>
  a.resource === b.resource && a.operation === b.operation && a.context === b.context && (a.effect ?? 'allow') === (b.effect ?? 'allow');

export function permissionEditor(initial: Permission[], title = 'Permissions'): PermissionEditor {
  let list: Permission[] = initial.map((p) => ({ resource: p.resource, operation: p.operation, context: p.context, effect: p.effect }));
  const listEl = h('div', { class: 'permission-list' });
  const draw = () =>
    clear(
      listEl,
      permissionTable(list, (p) =>
        h(
          'button',
          {
            type: 'button',
            'aria-label': `Remove permission ${describePermission(p)}`,
            onclick: () => {
              list = list.filter((q) => q !== p);
              draw();
            },
          },
          'Remove',
        ),
      ),
    );
  const context = select([['mqtt', 'MQTT'], ['http', 'HTTP']], 'mqtt');
  const resource = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const operation = select([['read', 'read'], ['write', 'write'], ['readWrite', 'readWrite']], 'readWrite');
  const effect = select([['allow', 'allow'], ['deny', 'deny']], 'allow');
  const slot = errorSlot();
  const addButton = h('button', { type: 'button' }, 'Add permission');
  addButton.addEventListener('click', () => {
    hideError(slot);
    const r = resource.value.trim();
    if (!r) return showError(slot, new Error('Enter a resource: a topic such as plant/# or a path such as /api/users/#.'));
    if (context.value === 'http' && !r.startsWith('/')) return showError(slot, new Error('An HTTP resource is a path starting with /.'));
    const p: Permission = { resource: r, operation: operation.value as Permission['operation'], context: context.value as Permission['context'] };
    if (effect.value === 'deny') p.effect = 'deny';
    if (list.some((q) => same(q, p))) return showError(slot, new Error('That permission is already in the list.'));
    list.push(p);
    resource.value = '';
    draw();
    resource.focus();
  });
  draw();
  const el = h(
    'fieldset',
    { class: 'permissions' },
    h('legend', null, title),
    listEl,
    h(
      'div',
      { class: 'row' },
      field('Permission type', context),
      field('Resource', resource, 'Topic syntax with + and #; HTTP paths start with /.'),
      field('Access', operation),
      field('Effect', effect),
      h('div', { class: 'field' }, addButton),
    ),
    slot,
  );
  return {
    el,
    get: () => list.map((p) => ({ ...p })),
    set: (next) => {
      list = next.map((p) => ({ resource: p.resource, operation: p.operation, context: p.context, effect: p.effect }));
      draw();
    },
    add: (more) => {
      for (const p of more) {
        const q = { resource: p.resource, operation: p.operation, context: p.context, effect: p.effect };
        if (!list.some((x) => same(x, q))) list.push(q);
      }
      draw();
    },
  };
}
