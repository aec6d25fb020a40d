// Sign in: user name and password; when the account has MFA on, the
// 6-digit code or a backup code. The server puts the session's token in
// an HttpOnly cookie (POST /admin/session); the page never sees it.

import { post, type Session } from '../api';
import { clear, errorSlot, field, h, run } from '../dom';

export function signIn(app: HTMLElement, note: string | undefined, done: () => void): void {
  const username = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const otp = h('input', { type: 'text', name: 'otp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6 });
  const backup = h('input', { type: 'text', name: 'backupCode', autocomplete: 'off' });
  const otpField = field('Authentication code', otp, 'The 6-digit code from your authenticator app.');
  const backupField = field('Backup code', backup, 'One of the backup codes you stored when you turned MFA on; each works once.');
  const useBackup = h('button', { type: 'button', class: 'link' }, 'Use a backup code instead');
  const useOtp = h('button', { type: 'button', class: 'link' }, 'Use the authenticator app instead');
  const codeNote = h('p', { class: 'note', role: 'status', hidden: true }, 'This account uses multi-factor authentication: enter the code from your authenticator app, or a backup code.');
  const second = h('div', { hidden: true }, codeNote, otpField, backupField, useBackup, useOtp);
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const slot = errorSlot();
  let mode: 'password' | 'otp' | 'backup' = 'password';

  const show = (next: typeof mode) => {
    mode = next;
    second.hidden = mode === 'password';
    otpField.hidden = mode !== 'otp';
    useBackup.hidden = mode !== 'otp';
    backupField.hidden = mode !== 'backup';
    useOtp.hidden = mode !== 'backup';
    otp.required = mode === 'otp';
    backup.required = mode === 'backup';
    (mode === 'otp' ? otp : mode === 'backup' ? backup : username).focus();
  };
  useBackup.addEventListener('click', () => show('backup'));
  useOtp.addEventListener('click', () => show('otp'));

  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to Gatehouse'),
    note ? h('p', { class: 'note', role: 'status' }, note) : null,
    field('User name', username),
    field('Password', password),
    second,
    h('div', { class: 'buttons' }, submit),
    slot,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void run(submit, slot, async () => {
      const body: Record<string, string> = { username: username.value, password: password.value };
      if (mode === 'otp') body.otp = otp.value.trim();
      if (mode === 'backup') body.backupCode = backup.value.trim();
      const session = await post<Session>('/admin/session', body);
      if (session.mfaRequired) {
        // The password was right; the account also wants its code.
        if (mode === 'password') show('otp');
        codeNote.hidden = false;
        return;
      }
      done();
    });
  });
  clear(app, h('main', { class: 'narrow' }, form));
  show('password');
}
