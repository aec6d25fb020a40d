// One user: account actions (enable/disable, password, delete, MFA off),
// roles and own permissions, the effective permissions with where each
// comes from, the access checker, and the user's tokens.

import { del, get, put, query, seg, type Permission, type Token, type User } from '../api';
import { actionButton, checkbox, clear, confirmAction, errorSlot, field, h, modal, run, select, text, when } from '../dom';
import type { Ctx } from '../main';
import { describePermission, permissionEditor, permissionTable } from './permissions';
import { grantTypeChoices, roleChoices } from './users';

interface Matched extends Permission {
  source: { type: 'role' | 'user'; id: string; name: string };
}

interface AccessAnswer {
  allowed: boolean;
  checked: 'topic' | 'filter' | 'path';
  mqttPublishPrefix?: string | null;
  matched: Matched[];
}

export async function userView(ctx: Ctx, id: string): Promise<void> {
  const { access, root } = ctx;
  const base = `/api/users/${seg(id)}`;
  const user = await get<User>(base);
  const self = user.id === access.me.id;
  const reload = () => ctx.go(`#/users/${encodeURIComponent(user.id)}`);

  const account = h('section', { 'aria-labelledby': 'account-title' }, h('h2', { id: 'account-title' }, 'Account'));
  account.append(
    h(
      'dl',
      null,
      h('dt', null, 'Enabled'),
      h('dd', null, user.enabled ? 'yes' : 'no (may not log in)'),
      h('dt', null, 'Multi-factor authentication'),
      h('dd', null, user.mfa_is_enrolled ? 'on' : 'off'),
      h('dt', null, 'MQTT publish prefix'),
      h('dd', null, user.mqttPublishPrefix ? h('code', null, user.mqttPublishPrefix) : '—'),
      h('dt', null, 'Created'),
      h('dd', null, when(user.createdAt)),
    ),
  );
  const actions = h('div', { class: 'buttons' });
  if (access.may('PUT', base) && !self) {
    actions.append(
      actionButton(user.enabled ? 'Disable user' : 'Enable user', async () => {
        await put(base, { enabled: !user.enabled });
        reload();
      }),
    );
  }
  if (access.may('PUT', `${base}/password`)) {
    actions.append(h('button', { type: 'button', onclick: () => changePassword(base, self) }, 'Change password'));
  }
  if (user.mfa_is_enrolled && access.may('DELETE', `${base}/mfa`)) {
    actions.append(
      actionButton('Turn off MFA', async () => {
        await del(`${base}/mfa`);
        reload();
      }),
    );
  }
  if (access.may('DELETE', base) && !self) {
    actions.append(
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            const text = `Delete ${user.username}? Their tokens are revoked, their MQTT sessions closed, and the account is gone for good.`;
            if (await confirmAction('Delete user', text, 'Delete user', () => del(base))) ctx.go('#/users');
          },
        },
        'Delete user',
      ),
    );
  }
  account.append(actions);

  const sections: HTMLElement[] = [account, await editSection(ctx, user, base, reload), effectiveSection(user)];
  if (access.may('GET', `${base}/access`)) sections.push(checkerSection(user, base));
  if (access.may('GET', `${base}/tokens`)) sections.push(await tokensSection(ctx, user, base));
  clear(root, h('div', { class: 'title' }, h('h1', null, `User ${user.username}`), h('a', { href: '#/users' }, 'All users')), sections);
}

async function editSection(ctx: Ctx, user: User, base: string, reload: () => void): Promise<HTMLElement> {
  const section = h('section', { 'aria-labelledby': 'edit-title' }, h('h2', { id: 'edit-title' }, 'Roles and permissions'));
  if (!ctx.access.may('PUT', base)) {
    section.append(
      h('h3', null, 'Roles'),
      h('p', null, user.roles.map((r) => r.name).join(', ') || 'No roles.'),
      h('h3', null, 'Own permissions'),
      permissionTable(user.permissions),
    );
    return section;
  }
  const roles = await roleChoices(ctx, user.roles.map((r) => r.id));
  const prefix = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value: user.mqttPublishPrefix ?? '' });
  const grants = grantTypeChoices(user.grantTypes);
  const enforce = checkbox('Require MFA enrolment', user.enforceMFAEnrollment);
  const permissions = permissionEditor(user.permissions, 'Own permissions');
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save changes');
  const slot = errorSlot();
  const saved = h('p', { role: 'status', class: 'ok', hidden: true }, 'Saved.');
  const form = h(
    'form',
    null,
    roles.el,
    field('MQTT publish prefix', prefix, 'Put in front of every topic the user publishes (include the trailing /); empty for none.'),
    grants.el,
    enforce.el,
    permissions.el,
    h('div', { class: 'buttons' }, save),
    slot,
    saved,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    saved.hidden = true;
    void run(save, slot, async () => {
      await put(base, {
        roles: roles.get(),
        permissions: permissions.get(),
        mqttPublishPrefix: prefix.value || null,
        grantTypes: grants.get(),
        enforceMFAEnrollment: enforce.input.checked,
      });
      if (user.id === ctx.access.me.id) await ctx.refreshMe();
      reload();
    });
  });
  section.append(form);
  return section;
}

function effectiveSection(user: User): HTMLElement {
  const rows: [string, Permission][] = [
    ...user.permissions.map((p): [string, Permission] => ['own', p]),
    ...user.roles.flatMap((r) => r.permissions.map((p): [string, Permission] => [`role ${r.name}`, p])),
  ];
  return h(
    'section',
    { 'aria-labelledby': 'effective-title' },
    h('h2', { id: 'effective-title' }, 'Effective permissions'),
    rows.length === 0
      ? h('p', { class: 'empty' }, 'None: this user may do nothing but read itself.')
      : h(
          'table',
          null,
          h('thead', null, h('tr', null, ['From', 'Type', 'Resource', 'Access', 'Effect'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            null,
            rows.map(([from, p]) =>
              h('tr', null, h('td', null, from), h('td', null, p.context.toUpperCase()), h('td', null, h('code', null, p.resource)), h('td', null, p.operation), h('td', null, p.effect === 'deny' ? 'deny' : 'allow')),
            ),
          ),
        ),
    h('p', { class: 'hint' }, 'A deny wins over any allow. %u stands for the user name, %c for the client id.'),
  );
}

function checkerSection(user: User, base: string): HTMLElement {
  const context = select([['mqtt', 'MQTT topic'], ['http', 'HTTP path']], 'mqtt');
  const operation = select([['write', 'write (publish)'], ['read', 'read (subscribe / receive)']], 'write');
  const resource = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const clientId = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const submit = h('button', { type: 'submit' }, 'Check access');
  const slot = errorSlot();
  const answer = h('div', { class: 'answer', 'aria-live': 'polite' });
  const form = h(
    'form',
    null,
    h('div', { class: 'row' }, field('Check', context), field('Operation', operation), field('Topic or path', resource), field('Client id (optional)', clientId, 'Resolves %c in the rules.')),
    h('div', { class: 'buttons' }, submit),
    slot,
    answer,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clear(answer);
    void run(submit, slot, async () => {
      const a = await get<AccessAnswer>(
        `${base}/access` + query({ context: context.value, operation: operation.value, resource: resource.value, clientId: clientId.value }),
      );
      const verb = operation.value === 'write' ? 'write' : a.checked === 'filter' ? 'subscribe to' : 'read';
      clear(
        answer,
        h('p', { class: a.allowed ? 'allowed' : 'denied', role: 'status' }, `${user.username} ${a.allowed ? 'may' : 'may not'} ${verb} ${resource.value}`),
        a.matched.length
          ? h('ul', null, a.matched.map((m) => h('li', null, `${describePermission(m)} — from ${m.source.type === 'role' ? `role ${m.source.name}` : 'own permissions'}`)))
          : h('p', null, 'No permission matches.'),
        a.checked === 'filter'
          ? h('p', { class: 'hint' }, 'A subscription is allowed when allows cover every topic the filter can match and no deny covers the whole filter; messages on topics a deny covers are still withheld on delivery (check a topic to see).')
          : null,
        a.mqttPublishPrefix && context.value === 'mqtt' && operation.value === 'write'
          ? h('p', { class: 'hint' }, `This user's publishes get the prefix ${a.mqttPublishPrefix}: a publish to x lands on ${a.mqttPublishPrefix}x, and that final topic is what was checked.`)
          : null,
      );
    });
  });
  return h('section', { 'aria-labelledby': 'checker-title' }, h('h2', { id: 'checker-title' }, 'Access checker'), form);
}

export async function tokensSection(ctx: Ctx, user: User, base: string, current?: string): Promise<HTMLElement> {
  const tokens = await get<Token[]>(`${base}/tokens`);
  const section = h('section', { 'aria-labelledby': 'tokens-title' }, h('h2', { id: 'tokens-title' }, 'Tokens'));
  const reload = () => ctx.go(location.hash);
  if (tokens.length === 0) {
    section.append(h('p', { class: 'empty' }, 'No tokens.'));
    return section;
  }
  const mayRevoke = (fp: string) => ctx.access.may('DELETE', `${base}/tokens/${fp}`);
  section.append(
    h(
      'table',
      null,
      h('thead', null, h('tr', null, ['Label', 'Created', 'Expires', 'Fingerprint', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        null,
        tokens.map((t) =>
          h(
            'tr',
            null,
            h('td', null, text(t.label), t.fingerprint === current ? h('span', { class: 'badge' }, ' this browser') : null),
            h('td', null, when(t.createdAt)),
            h('td', null, when(t.expiresAt)),
            h('td', null, h('code', { title: t.fingerprint }, t.fingerprint.slice(0, 12) + '…')),
            h(
              'td',
              null,
              mayRevoke(t.fingerprint)
                ? actionButton(
                    'Revoke',
                    async () => {
                      await del(`${base}/tokens/${seg(t.fingerprint)}`);
                      reload();
                    },
                    { 'aria-label': `Revoke token ${t.label ?? t.fingerprint.slice(0, 12)}` },
                  )
                : null,
            ),
          ),
        ),
      ),
    ),
  );
  if (ctx.access.may('DELETE', `${base}/tokens`)) {
    section.append(
      h('div', { class: 'buttons' }, h('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          if (await confirmAction('Revoke all tokens', `Revoke every token of ${user.username}? Scripts and MQTT clients using them stop working at once.`, 'Revoke all tokens', () => del(`${base}/tokens`))) reload();
        },
      }, 'Revoke all tokens')),
    );
  }
  return section;
}

function changePassword(base: string, self: boolean): void {
  const old = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const repeat = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Change password');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const slot = errorSlot();
  const form = h(
    'form',
    null,
    self ? field('Current password', old) : null,
    field('New password', next),
    field('Repeat new password', repeat),
    h('div', { class: 'buttons' }, submit, cancel),
    slot,
  );
  const { close } = modal('Change password', form);
  cancel.addEventListener('click', close);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(submit, slot, async () => {
      if (next.value !== repeat.value) throw new Error('The two new passwords differ.');
      await put(`${base}/password`, self ? { oldPassword: old.value, newPassword: next.value } : { newPassword: next.value });
      close();
    });
  });
}
