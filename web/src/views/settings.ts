// Settings of the signed-in user: MFA (enrol with the QR code, backup
// codes shown once, disable, regenerate), own password, own tokens
// (listed, revocable) and a new long-lived token with a label.

import { get, post, put, type User } from '../api';
import { clear, errorSlot, field, h, run } from '../dom';
import type { Ctx } from '../main';
import { tokensSection } from './user';

interface Enrollment {
  secret: string;
  otpauthUri: string;
  qrCodeSvg: string;
}

/** The API's QR code as an inline SVG element, reduced to shapes (no script, style or links). */
function qrCode(markup: string): Node {
  const doc = new DOMParser().parseFromString(markup, 'image/svg+xml');
  const svg = doc.documentElement;
  if (svg.localName !== 'svg' || doc.getElementsByTagName('parsererror').length) return h('p', null, 'The QR code could not be shown; enter the secret key instead.');
  for (const el of [svg, ...Array.from(svg.querySelectorAll('*'))]) {
    if (!['svg', 'path', 'rect', 'g'].includes(el.localName)) {
      el.remove();
      continue;
    }
    for (const a of Array.from(el.attributes)) {
      if (a.name.startsWith('on') || a.name === 'style' || a.name.endsWith('href') || a.name === 'class') el.removeAttribute(a.name);
    }
  }
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'QR code to scan with your authenticator app');
  svg.setAttribute('class', 'qr');
  return document.importNode(svg, true);
}

function codeInput(): HTMLInputElement {
  return h('input', { type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, required: true });
}

function backupCodes(codes: string[], done: () => void): HTMLElement {
  const ok = h('button', { type: 'button', class: 'primary' }, 'I have stored the backup codes');
  ok.addEventListener('click', done);
  return h(
    'div',
    { class: 'backup', role: 'region', 'aria-label': 'Backup codes' },
    h('p', { class: 'warning' }, 'Store these backup codes somewhere safe now: they are not shown again. Each one signs you in once when you do not have your authenticator app.'),
    h('ol', { class: 'backup-codes' }, codes.map((c) => h('li', null, h('code', null, c)))),
    ok,
  );
}

function mfaSection(ctx: Ctx, me: User): HTMLElement {
  const section = h('section', { 'aria-labelledby': 'mfa-title' }, h('h2', { id: 'mfa-title' }, 'Multi-factor authentication'));
  const body = h('div');
  section.append(body);
  const reload = async () => {
    await ctx.refreshMe();
    ctx.go('#/settings');
  };

  if (!me.mfa_is_enrolled) {
    const start = h('button', { type: 'button', class: 'primary' }, 'Enable multi-factor authentication');
    const slot = errorSlot();
    clear(body, h('p', { role: 'status' }, 'Multi-factor authentication is off.'), start, slot);
    start.addEventListener('click', () =>
      void run(start, slot, async () => {
        const e = await post<Enrollment>('/api/mfa/enroll');
        const otp = codeInput();
        const confirm = h('button', { type: 'submit', class: 'primary' }, 'Confirm and enable MFA');
        const confirmSlot = errorSlot();
        const form = h(
          'form',
          null,
          h('p', null, 'Scan the QR code with your authenticator app, or enter the secret key by hand. Then enter the code the app shows.'),
          qrCode(e.qrCodeSvg),
          h('dl', null, h('dt', null, 'Secret key'), h('dd', null, h('code', { id: 'mfa-secret' }, e.secret))),
          field('Authentication code', otp),
          h('div', { class: 'buttons' }, confirm),
          confirmSlot,
        );
        form.addEventListener('submit', (event) => {
          event.preventDefault();
          void run(confirm, confirmSlot, async () => {
            const { backupCodes: codes } = await post<{ backupCodes: string[] }>('/api/mfa/confirm', { otp: otp.value.trim() });
            const after = ctx.session.mfaEnrollmentRequired
              ? h('p', { class: 'note', role: 'status' }, 'MFA is on. Sign out and sign in again with a code to use the rest of the page.')
              : null;
            clear(body, h('p', { role: 'status' }, 'Multi-factor authentication is on.'), backupCodes(codes, () => void reload()), after);
          });
        });
        clear(body, form);
        otp.focus();
      }),
    );
    return section;
  }

  const disableOtp = codeInput();
  const disable = h('button', { type: 'submit', class: 'danger' }, 'Disable MFA');
  const disableSlot = errorSlot();
  const disableForm = h('form', { 'aria-labelledby': 'mfa-disable-title' }, h('h3', { id: 'mfa-disable-title' }, 'Turn it off'), field('Authentication code', disableOtp), h('div', { class: 'buttons' }, disable), disableSlot);
  disableForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(disable, disableSlot, async () => {
      await post('/api/mfa/disable', { otp: disableOtp.value.trim() });
      await reload();
    });
  });
  const regenOtp = codeInput();
  const regen = h('button', { type: 'submit' }, 'Regenerate backup codes');
  const regenSlot = errorSlot();
  const regenForm = h('form', { 'aria-labelledby': 'mfa-regen-title' }, h('h3', { id: 'mfa-regen-title' }, 'New backup codes'), h('p', null, 'The old codes stop working.'), field('Authentication code', regenOtp), h('div', { class: 'buttons' }, regen), regenSlot);
  regenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(regen, regenSlot, async () => {
      const { backupCodes: codes } = await post<{ backupCodes: string[] }>('/api/mfa/backup-codes', { otp: regenOtp.value.trim() });
      clear(body, h('p', { role: 'status' }, 'Multi-factor authentication is on.'), backupCodes(codes, () => void reload()));
    });
  });
  clear(body, h('p', { role: 'status' }, 'Multi-factor authentication is on.'), h('div', { class: 'columns' }, disableForm, regenForm));
  return section;
}

function passwordSection(): HTMLElement {
  const old = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const repeat = h('input', { type: 'password', autocomplete: 'new-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Change password');
  const slot = errorSlot();
  const done = h('p', { role: 'status', class: 'ok', hidden: true }, 'Your password was changed.');
  const form = h('form', null, field('Current password', old), field('New password', next), field('Repeat new password', repeat), h('div', { class: 'buttons' }, submit), slot, done);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    done.hidden = true;
    void run(submit, slot, async () => {
      if (next.value !== repeat.value) throw new Error('The two new passwords differ.');
      await put('/api/users/me/password', { oldPassword: old.value, newPassword: next.value });
      form.reset();
      done.hidden = false;
    });
  });
  return h('section', { 'aria-labelledby': 'password-title' }, h('h2', { id: 'password-title' }, 'Password'), form);
}

function newTokenSection(ctx: Ctx, me: User): HTMLElement {
  const label = h('input', { type: 'text', autocomplete: 'off', required: true, maxlength: 256 });
  const hours = h('input', { type: 'number', min: 1, value: 8760, required: true });
  const password = h('input', { type: 'password', autocomplete: 'current-password', required: true });
  const otp = codeInput();
  const submit = h('button', { type: 'submit' }, 'Create token');
  const slot = errorSlot();
  const out = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    null,
    h('p', null, 'For scripts and devices: the token works as Authorization: Bearer, as ?apiToken=, and as the MQTT password with your user name, with your permissions.'),
    field('Token label', label),
    field('Valid for (hours)', hours),
    field('Your password', password),
    me.mfa_is_enrolled ? field('Authentication code', otp) : null,
    h('div', { class: 'buttons' }, submit),
    slot,
    out,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clear(out);
    void run(submit, slot, async () => {
      const body: Record<string, unknown> = { username: me.username, password: password.value, label: label.value.trim(), expireTimeInHours: Number(hours.value) };
      if (me.mfa_is_enrolled) body.otp = otp.value.trim();
      const { token } = await post<{ token: string }>('/api/login', body);
      form.reset();
      const shown = h('textarea', { readonly: true, rows: 4, spellcheck: 'false' });
      shown.value = token;
      const list = h('button', { type: 'button' }, 'Done');
      list.addEventListener('click', () => ctx.go('#/settings'));
      clear(out, h('p', { class: 'warning' }, 'Copy the token now: it is not shown again.'), field('New token', shown), list);
      shown.select();
    });
  });
  return h('section', { 'aria-labelledby': 'new-token-title' }, h('h2', { id: 'new-token-title' }, 'New long-lived token'), form);
}

export async function settingsView(ctx: Ctx): Promise<void> {
  const me = await get<User>('/api/users/me');
  if (ctx.session.mfaEnrollmentRequired) {
    clear(ctx.root, h('h1', null, 'Settings'), mfaSection(ctx, me));
    return;
  }
  clear(
    ctx.root,
    h('h1', null, 'Settings'),
    mfaSection(ctx, me),
    passwordSection(),
    await tokensSection(ctx, me, '/api/users/me', ctx.session.fingerprint),
    newTokenSection(ctx, me),
  );
}
