// The client registry (issue 12's API): lock state with the time left
// counting down, unlock for some minutes, lock; pending requests,
// refreshed every two seconds, each with its pairing code, confirmed
// (choosing roles) or rejected.

import { get, post, type Permission, type Role } from '../api';
import { actionButton, checkbox, clear, errorSlot, field, h, modal, run, showError, hideError, text, when } from '../dom';
import type { Ctx } from '../main';
import { describePermission } from './permissions';

interface PendingRequest {
  id: string;
  username: string;
  method: string;
  flow?: string;
  status?: string;
  roles: string[];
  permissions: Permission[];
  context?: string | null;
  address: string;
  firstSeen: number;
  lastSeen: number;
  attempts: number;
  /** Refused requests of another device for the same name. */
  conflicts?: number;
  pairingCode: string;
}

interface RegistryStatus {
  locked: boolean;
  unlockedUntil?: number | null;
  pendingRequests: PendingRequest[];
}

const POLL_MS = 2000;

export async function registryView(ctx: Ctx): Promise<void> {
  const { access, root } = ctx;
  const mayWrite = (path: string) => access.may('POST', path);
  const state = h('p', { class: 'registry-state', role: 'status' });
  const controls = h('div', { class: 'row' });
  const requests = h('div');
  const pollError = errorSlot();
  let status: RegistryStatus = await get<RegistryStatus>('/api/client-registry');
  let drawn = '';

  const minutes = h('input', { type: 'number', min: 1, max: 1440, value: 5, required: true });
  const unlock = h('button', { type: 'button' }, 'Unlock registry');
  const lock = h('button', { type: 'button' }, 'Lock registry');
  const controlSlot = errorSlot();
  unlock.addEventListener('click', () =>
    void run(unlock, controlSlot, async () => {
      const m = Number(minutes.value);
      if (!Number.isFinite(m) || m <= 0) throw new Error('Enter how many minutes the registry stays open (1 or more).');
      status = await post<RegistryStatus>('/api/client-registry/unlock', { duration: Math.round(m * 60_000) });
      draw();
    }),
  );
  lock.addEventListener('click', () =>
    void run(lock, controlSlot, async () => {
      status = await post<RegistryStatus>('/api/client-registry/lock');
      draw();
    }),
  );
  if (mayWrite('/api/client-registry/unlock')) controls.append(field('Open for (minutes)', minutes), h('div', { class: 'field' }, unlock));
  if (mayWrite('/api/client-registry/lock')) controls.append(h('div', { class: 'field' }, lock));

  const tick = () => {
    const left = status.unlockedUntil ? status.unlockedUntil - Date.now() : 0;
    if (status.locked || left <= 0) {
      state.textContent = 'The registry is locked: devices that register get 423 Locked.';
      state.className = 'registry-state locked';
      lock.hidden = true;
    } else {
      const s = Math.ceil(left / 1000);
      const mm = Math.floor(s / 60);
      const ss = String(s % 60).padStart(2, '0');
      state.textContent = `The registry is open for another ${mm}:${ss} (until ${new Date(status.unlockedUntil!).toLocaleTimeString()}).`;
      state.className = 'registry-state open';
      lock.hidden = false;
    }
  };

  const draw = () => {
    tick();
    // Redrawn only when something changed, so focus and open dialogs stay.
    const key = JSON.stringify(status.pendingRequests);
    if (key === drawn) return;
    drawn = key;
    const list = status.pendingRequests;
    clear(
      requests,
      list.length === 0
        ? h('p', { class: 'empty' }, 'No pending requests.')
        : h(
            'table',
            null,
            h('thead', null, h('tr', null, ['User name', 'Pairing code', 'Method', 'Requested', 'Context', 'Address', 'First seen', 'Last seen', 'Attempts', 'Conflicts', ''].map((t) => h('th', { scope: 'col' }, t)))),
            h(
              'tbody',
              null,
              list.map((r) =>
                h(
                  'tr',
                  { 'data-username': r.username },
                  h('td', null, r.username),
                  h('td', null, h('code', { class: 'pairing' }, r.pairingCode)),
                  h('td', null, r.method + (r.flow ? ` (${r.flow})` : '')),
                  h('td', null, [...r.roles.map((n) => `role ${n}`), ...r.permissions.map(describePermission)].join('; ') || '—'),
                  h('td', null, text(r.context)),
                  h('td', null, r.address),
                  h('td', null, when(r.firstSeen)),
                  h('td', null, when(r.lastSeen)),
                  h('td', null, String(r.attempts)),
                  h('td', r.conflicts ? { class: 'denied', title: 'Another device asked for this name too: make sure the pairing code matches the device in front of you.' } : null, String(r.conflicts ?? 0)),
                  h(
                    'td',
                    null,
                    r.status === 'granted'
                      ? 'confirmed; waiting for the device to ask again'
                      : [
                          mayWrite('/api/client-registry/confirm')
                            ? h('button', { type: 'button', 'aria-label': `Confirm ${r.username}`, onclick: () => void confirm(ctx, r, refresh) }, 'Confirm')
                            : null,
                          mayWrite('/api/client-registry/reject')
                            ? actionButton(
                                'Reject',
                                async () => {
                                  await post('/api/client-registry/reject', { username: r.username });
                                  await refresh();
                                },
                                { 'aria-label': `Reject ${r.username}` },
                              )
                            : null,
                        ],
                  ),
                ),
              ),
            ),
          ),
    );
  };

  const refresh = async () => {
    try {
      status = await get<RegistryStatus>('/api/client-registry');
      hideError(pollError);
      draw();
    } catch (e) {
      showError(pollError, e);
    }
  };

  clear(
    root,
    h('h1', null, 'Client registry'),
    h('p', { class: 'hint' }, 'While the registry is open, devices may ask for an account (POST /api/client-registry/register). Compare the pairing code with the one the device shows before you confirm.'),
    state,
    controls,
    controlSlot,
    h('h2', null, 'Pending requests'),
    requests,
    pollError,
  );
  draw();
  const timer = window.setInterval(tick, 1000);
  const poller = window.setInterval(() => void refresh(), POLL_MS);
  ctx.onLeave(() => {
    window.clearInterval(timer);
    window.clearInterval(poller);
  });
}

async function confirm(ctx: Ctx, r: PendingRequest, refresh: () => Promise<void>): Promise<void> {
  const roles = ctx.access.may('GET', '/api/roles') ? await get<Role[]>('/api/roles') : [];
  const boxes = roles.map((role) => ({ role, box: checkbox(role.name, r.roles.includes(role.name) || r.roles.includes(role.id)) }));
  const grantAsked = r.permissions.length ? checkbox(`Also grant the requested permissions (${r.permissions.map(describePermission).join('; ')})`) : null;
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Confirm registration');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const slot = errorSlot();
  const form = h(
    'form',
    null,
    h('p', null, 'The device ', h('strong', null, r.username), ' shows the pairing code ', h('code', null, r.pairingCode), ' (from ', r.address, ').'),
    h('fieldset', null, h('legend', null, 'Roles for the new user'), boxes.length ? boxes.map((b) => b.box.el) : h('p', { class: 'empty' }, 'No roles to choose from.')),
    grantAsked?.el,
    h('div', { class: 'buttons' }, submit, cancel),
    slot,
  );
  const { close } = modal(`Confirm ${r.username}`, form);
  cancel.addEventListener('click', close);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(submit, slot, async () => {
      // The code the administrator compared: the broker refuses the
      // confirmation if the pending request now has another.
      const body: Record<string, unknown> = { username: r.username, pairingCode: r.pairingCode, roles: boxes.filter((b) => b.box.input.checked).map((b) => b.role.id) };
      if (grantAsked?.input.checked) body.permissions = r.permissions;
      await post('/api/client-registry/confirm', body);
      close();
      await refresh();
    });
  });
}
