// The admin page end to end in headless Chromium (issue 15's scenarios).
// One broker for the file; each scenario has users of its own. A
// screenshot of each view goes to $GATEHOUSE_SCREENSHOTS (docs/images
// when the README's pictures are refreshed), else to a temporary folder.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  ADMIN_PASSWORD,
  SHOTS,
  api,
  assertNamed,
  base32Decode,
  curl,
  currentStep,
  launchBrowser,
  login,
  mosquittoPub,
  mosquittoSub,
  openPage,
  signIn,
  startBroker,
  totp,
  until,
} from './harness.mjs';

let broker;
let browser;
let admin; // the admin API as admin (bearer token)

before(async () => {
  broker = await startBroker();
  browser = await launchBrowser();
  admin = api(broker.base, await login(broker.base, 'admin', ADMIN_PASSWORD));
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

/** A page for one scenario; it fails on any console error or CSP violation. */
let scenarios = 0;
async function scenario(body) {
  const p = await openPage(browser);
  scenarios += 1;
  try {
    await body(p);
  } catch (e) {
    e.message += '\n' + (await p.report(String(scenarios)));
    throw e;
  } finally {
    await p.close();
  }
  p.check();
}

/** A screenshot of the view, whose controls must all have names. */
async function shot(page, name, { fullPage = true } = {}) {
  await assertNamed(page);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

async function createUser(username, password, extra = {}) {
  const r = await admin('POST', '/api/users', { username, password, ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

test('TOTP here follows RFC 6238 (its SHA-1 test vector)', () => {
  const secret = Buffer.from('12345678901234567890');
  assert.equal(totp(secret, 1, 8), '94287082');
  assert.equal(totp(secret, Math.floor(1111111109 / 30), 8), '07081804');
  assert.deepEqual(base32Decode('GEZDGNBVGY3TQOJQ'), Buffer.from('1234567890'));
});

test('the harness catches a CSP violation (an inline script the page did not have)', async () => {
  const p = await openPage(browser);
  try {
    await p.page.goto(`${broker.base}/admin`);
    await p.page.getByLabel('User name').waitFor();
    await p.page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.injected = true';
      document.body.append(s);
    });
    await until('the violation to be reported', async () => {
      try {
        p.check();
        return false;
      } catch (e) {
        return /CSP violation: script-src/.test(e.message);
      }
    });
    assert.equal(await p.page.evaluate(() => window.injected), undefined, 'the inline script did not run');
  } finally {
    await p.close();
  }
});

test('the page is served with its security headers, and its assets are cached only when hashed', async () => {
  const page = await fetch(`${broker.base}/admin`);
  assert.equal(page.status, 200);
  assert.equal(
    page.headers.get('content-security-policy'),
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  );
  assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
  assert.equal(page.headers.get('cache-control'), 'no-cache');
  const html = await page.text();
  const script = html.match(/src="(\/admin\/assets\/app-[A-Z0-9]+\.js)"/)[1];
  const asset = await fetch(broker.base + script);
  assert.match(asset.headers.get('cache-control'), /immutable/);
  const again = await fetch(broker.base + script, { headers: { 'If-None-Match': asset.headers.get('etag') } });
  assert.equal(again.status, 304);
});

test('sign in with a password, and a wrong one is explained next to the form', async () => {
  await scenario(async ({ page, expectFailure }) => {
    await page.goto(`${broker.base}/admin`);
    await shot(page, 'sign-in');
    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password', { exact: true }).fill('not-the-password');
    expectFailure('/admin/session', 401);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: /wrong username or password/i }).waitFor();
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Users' }).waitFor();
    assert.equal(await page.getByText('Signed in as').textContent(), 'Signed in as admin');
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'gatehouse_session');
    assert.ok(session?.httpOnly, 'HttpOnly session cookie');
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie), '', 'the script cannot read the cookie');
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await shot(page, 'users');
  });
});

test('signing in works with the keyboard alone', async () => {
  await scenario(async ({ page }) => {
    await page.goto(`${broker.base}/admin`);
    await page.getByLabel('User name').waitFor();
    // The user name field has the focus; Tab moves on, Enter submits.
    await page.keyboard.type('admin');
    await page.keyboard.press('Tab');
    await page.keyboard.type(ADMIN_PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Users' }).waitFor();
    // The views are links in the header, reachable with Tab.
    await page.getByRole('link', { name: 'Roles' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Roles' }).waitFor();
  });
});

test('users: server-side paging and search', async () => {
  for (let i = 1; i <= 23; i += 1) await createUser(`page-user-${String(i).padStart(2, '0')}`, 'page-user-secret');
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.getByLabel('Search users').fill('PAGE-USER');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('Page 1 of 2 (23 users)').waitFor();
    await page.getByRole('link', { name: 'page-user-20' }).waitFor();
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.getByText('Page 2 of 2 (23 users)').waitFor();
    await page.getByRole('link', { name: 'page-user-23' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'page-user-01' }).count(), 0);
  });
});

test('one user: disable, enable, change the password, delete after confirming', async () => {
  const user = await createUser('acct-1', 'acct-1-secret');
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.goto(`${broker.base}/admin#/users/${user.id}`);
    await page.getByRole('button', { name: 'Disable user' }).click();
    await page.getByRole('button', { name: 'Enable user' }).waitFor();
    assert.equal((await admin('GET', `/api/users/${user.id}`)).body.enabled, false);
    await page.getByRole('button', { name: 'Enable user' }).click();
    await page.getByRole('button', { name: 'Disable user' }).waitFor();
    await page.getByRole('button', { name: 'Change password' }).click();
    const dialog = page.getByRole('dialog', { name: 'Change password' });
    await dialog.getByLabel('New password', { exact: true }).fill('acct-1-new-secret');
    await dialog.getByLabel('Repeat new password').fill('acct-1-other');
    await dialog.getByRole('button', { name: 'Change password' }).click();
    await dialog.getByRole('alert').filter({ hasText: 'The two new passwords differ.' }).waitFor();
    await dialog.getByLabel('Repeat new password').fill('acct-1-new-secret');
    await dialog.getByRole('button', { name: 'Change password' }).click();
    await dialog.waitFor({ state: 'detached' });
    await login(broker.base, 'acct-1', 'acct-1-new-secret');
    await page.getByRole('button', { name: 'Delete user' }).click();
    const confirm = page.getByRole('dialog', { name: 'Delete user' });
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    await confirm.waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'Delete user' }).click();
    await page.getByRole('dialog', { name: 'Delete user' }).getByRole('button', { name: 'Delete user' }).click();
    await page.getByRole('heading', { name: 'Users' }).waitFor();
  });
  assert.equal((await admin('GET', '/api/users?username[eq]=acct-1')).body.length, 0);
});

test('create a user with a permission in the page; it publishes with mosquitto_pub', async () => {
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Add user' }).click();
    const dialog = page.getByRole('dialog', { name: 'Add user' });
    await dialog.getByLabel('Advanced mode').check();
    await dialog.getByLabel('User name').fill('sensor-1');
    await dialog.getByLabel('Password', { exact: true }).fill('sensor-1-secret');
    await dialog.getByLabel('Repeat password').fill('sensor-1-secret');
    await dialog.getByLabel('Permission type').selectOption('mqtt');
    await dialog.getByLabel('Resource').fill('sensors/%u/#');
    await dialog.getByLabel('Access', { exact: true }).selectOption('write');
    await dialog.getByRole('button', { name: 'Add permission' }).click();
    await dialog.getByRole('cell', { name: 'sensors/%u/#', exact: true }).waitFor();
    // A modal dialog: the window made tall enough to show all of it.
    await page.setViewportSize({ width: 1280, height: 1400 });
    await shot(page, 'user-create', { fullPage: false });
    await page.setViewportSize({ width: 1280, height: 900 });
    await dialog.getByRole('button', { name: 'Create user' }).click();
    await page.getByRole('heading', { name: 'User sensor-1' }).waitFor();
    await page.getByRole('heading', { name: 'Effective permissions' }).waitFor();
    await shot(page, 'user');

    const sub = mosquittoSub(broker.mqttPort, 'admin', ADMIN_PASSWORD, 'e2e-watch', 'sensors/#', ['-C', '1', '-W', '15']);
    try {
      await new Promise((r) => setTimeout(r, 500)); // subscribed
      await mosquittoPub(broker.mqttPort, 'sensor-1', 'sensor-1-secret', 'sensors/sensor-1/temp', '21.5');
      assert.equal(await sub.exited, 0, sub.output());
      assert.match(sub.output(), /sensors\/sensor-1\/temp 21\.5/);
    } finally {
      sub.kill();
    }
  });
});

test('the permission checker answers with the permission and role that decide', async () => {
  await admin('POST', '/api/roles', { name: 'plant-readers', permissions: [{ resource: 'plant/#', operation: 'read', context: 'mqtt' }] });
  const roles = (await admin('GET', '/api/roles')).body;
  const role = roles.find((r) => r.name === 'plant-readers');
  const user = await createUser('checker-1', 'checker-1-secret', {
    roles: [role.id],
    initialPermissions: [{ resource: 'plant/line-1/cmd', operation: 'write', context: 'mqtt' }],
  });
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.goto(`${broker.base}/admin#/users/${user.id}`);
    const effective = page.getByRole('region', { name: 'Effective permissions' });
    await effective.getByRole('cell', { name: 'role plant-readers', exact: true }).waitFor();
    await effective.getByRole('cell', { name: 'own', exact: true }).waitFor();
    const checker = page.getByRole('region', { name: 'Access checker' });
    await checker.getByLabel('Operation').selectOption('read');
    await checker.getByLabel('Topic or path').fill('plant/line-1/temp');
    await checker.getByRole('button', { name: 'Check access' }).click();
    await checker.getByText('checker-1 may read plant/line-1/temp').waitFor();
    await checker.getByText('from role plant-readers').waitFor();
    await shot(page, 'user-checker');
    await checker.getByLabel('Operation').selectOption('write');
    await checker.getByRole('button', { name: 'Check access' }).click();
    await checker.getByText('checker-1 may not write plant/line-1/temp').waitFor();
    await checker.getByLabel('Topic or path').fill('plant/line-1/cmd');
    await checker.getByRole('button', { name: 'Check access' }).click();
    await checker.getByText('checker-1 may write plant/line-1/cmd').waitFor();
    await checker.getByText('from own permissions').waitFor();
  });
});

test('roles: create one copying another role\'s permissions', async () => {
  await admin('POST', '/api/roles', { name: 'template', permissions: [{ resource: 'tpl/#', operation: 'readWrite', context: 'mqtt' }] });
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.getByRole('link', { name: 'Roles' }).click();
    await page.getByRole('button', { name: 'Add role' }).click();
    const dialog = page.getByRole('dialog', { name: 'Add role' });
    await dialog.getByLabel('Role name').fill('copied');
    await dialog.getByLabel('Copy permissions from role').selectOption({ label: 'template' });
    await dialog.getByRole('button', { name: 'Copy permissions' }).click();
    await dialog.getByRole('cell', { name: 'tpl/#', exact: true }).waitFor();
    await dialog.getByRole('button', { name: 'Create role' }).click();
    await page.getByRole('heading', { name: 'Role copied' }).waitFor();
    await page.goto(`${broker.base}/admin#/roles`);
    await page.getByRole('link', { name: 'copied' }).waitFor();
    await shot(page, 'roles');
  });
  const copied = (await admin('GET', '/api/roles')).body.find((r) => r.name === 'copied');
  assert.deepEqual(copied.permissions.map((p) => p.resource), ['tpl/#']);
});

test('client registry: unlock, a request sent with curl appears with its pairing code, confirm it', async () => {
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.getByRole('link', { name: 'Client registry' }).click();
    await page.getByText('The registry is locked').waitFor();
    await page.getByLabel('Open for (minutes)').fill('5');
    await page.getByRole('button', { name: 'Unlock registry' }).click();
    await page.getByText(/open for another 4:5\d/).waitFor();

    const register = () =>
      curl(['-X', 'POST', '-H', 'Content-Type: application/json', `${broker.base}/api/client-registry/register`,
        '-d', JSON.stringify({ username: 'device-7', password: 'device-7-secret', context: 'line 1' })]);
    const pending = await register();
    assert.equal(pending.status, 202, pending.body);
    const { pairingCode } = JSON.parse(pending.body);
    // It appears by itself (the list refreshes), with the same code.
    const row = page.getByRole('row').filter({ hasText: 'device-7' });
    await row.getByText(pairingCode).waitFor();
    await shot(page, 'registry');
    await row.getByRole('button', { name: 'Confirm device-7' }).click();
    const dialog = page.getByRole('dialog', { name: 'Confirm device-7' });
    await dialog.getByLabel('plant-readers').check();
    await dialog.getByRole('button', { name: 'Confirm registration' }).click();
    await dialog.waitFor({ state: 'detached' });
    const granted = await register();
    assert.equal(granted.status, 201, granted.body);
    await page.getByText('No pending requests.').waitFor();

    const other = await curl(['-X', 'POST', '-H', 'Content-Type: application/json', `${broker.base}/api/client-registry/register`,
      '-d', JSON.stringify({ username: 'device-8', password: 'device-8-secret' })]);
    assert.equal(other.status, 202, other.body);
    await page.getByRole('button', { name: 'Reject device-8' }).click();
    await page.getByText('No pending requests.').waitFor();
    await page.getByRole('button', { name: 'Lock registry', exact: true }).click();
    await page.getByText('The registry is locked').waitFor();
  });
  const users = (await admin('GET', '/api/users?username[eq]=device-7')).body;
  assert.deepEqual(users[0].roles.map((r) => r.name), ['plant-readers']);
});

test('MFA: enrol with the secret from the page, then sign in with a code and with a backup code', async () => {
  await createUser('mfa-1', 'mfa-1-secret');
  let secret;
  let backupCodes;
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'mfa-1', 'mfa-1-secret');
    await page.getByRole('link', { name: 'Enable it in Settings' }).click();
    await page.getByRole('button', { name: 'Enable multi-factor authentication' }).click();
    await page.getByRole('img', { name: /QR code/ }).waitFor();
    secret = base32Decode(await page.locator('#mfa-secret').textContent());
    await shot(page, 'settings-mfa-enrol');
    await page.getByLabel('Authentication code').fill(totp(secret, currentStep()));
    await page.getByRole('button', { name: 'Confirm and enable MFA' }).click();
    const codes = page.getByRole('region', { name: 'Backup codes' });
    await codes.waitFor();
    backupCodes = await codes.getByRole('listitem').allTextContents();
    assert.ok(backupCodes.length >= 5, backupCodes.join());
    await page.getByRole('button', { name: 'I have stored the backup codes' }).click();
    await page.getByText('Multi-factor authentication is on.').waitFor();
    await shot(page, 'settings');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Gatehouse' }).waitFor();
  });
  // The step after the one used to confirm (a used step is refused).
  const step = currentStep() + 1;
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'mfa-1', 'mfa-1-secret', { otp: () => totp(secret, step) });
    await page.getByRole('button', { name: 'Sign out' }).click();
  });
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'mfa-1', 'mfa-1-secret', { backupCode: backupCodes[0] });
    // New backup codes need a step after the last one used (step).
    await until('the next TOTP step', async () => currentStep() >= step, 40_000);
    await page.getByRole('link', { name: 'Settings', exact: true }).click();
    const regenerate = page.getByRole('form', { name: 'New backup codes' });
    await regenerate.getByLabel('Authentication code').fill(totp(secret, step + 1));
    await regenerate.getByRole('button', { name: 'Regenerate backup codes' }).click();
    const codes = page.getByRole('region', { name: 'Backup codes' });
    await codes.waitFor();
    const fresh = await codes.getByRole('listitem').allTextContents();
    assert.ok(!fresh.includes(backupCodes[1]), 'the old codes are gone');
  });
  // An administrator turns it off.
  const user = (await admin('GET', '/api/users?username[eq]=mfa-1')).body[0];
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.goto(`${broker.base}/admin#/users/${user.id}`);
    await page.getByRole('button', { name: 'Turn off MFA' }).click();
    await page.getByRole('button', { name: 'Turn off MFA' }).waitFor({ state: 'detached' });
  });
  assert.equal((await admin('GET', `/api/users/${user.id}`)).body.mfa_is_enrolled, false);
});

test('a user who must enrol MFA first sees only the enrolment', async () => {
  await createUser('enrol-1', 'enrol-1-secret', {
    enforceMFAEnrollment: true,
    initialPermissions: [{ resource: '/api/#', operation: 'readWrite', context: 'http' }],
  });
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'enrol-1', 'enrol-1-secret');
    await page.getByText('You must turn on multi-factor authentication').waitFor();
    await page.getByRole('button', { name: 'Enable multi-factor authentication' }).waitFor();
    const nav = page.getByRole('navigation', { name: 'Views' });
    assert.deepEqual(await nav.getByRole('link').allTextContents(), ['Settings']);
    assert.equal(await page.getByRole('region', { name: 'Tokens', exact: true }).count(), 0);
  });
});

test('settings: a long-lived token with a label, listed and revoked; own password', async () => {
  await createUser('self-1', 'self-1-secret');
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'self-1', 'self-1-secret');
    await page.getByRole('link', { name: 'Settings', exact: true }).click();
    const create = page.getByRole('region', { name: 'New long-lived token' });
    await create.getByLabel('Token label').fill('ci-script');
    await create.getByLabel('Valid for (hours)').fill('1000');
    await create.getByLabel('Your password').fill('self-1-secret');
    await create.getByRole('button', { name: 'Create token' }).click();
    const token = await create.getByLabel('New token').inputValue();
    assert.equal((await api(broker.base, token)('GET', '/api/users/me')).body.username, 'self-1');
    await create.getByRole('button', { name: 'Done' }).click();
    const tokens = page.getByRole('region', { name: 'Tokens', exact: true });
    await tokens.getByRole('button', { name: 'Revoke token ci-script' }).click();
    await tokens.getByRole('button', { name: 'Revoke token ci-script' }).waitFor({ state: 'detached' });
    assert.equal((await api(broker.base, token)('GET', '/api/users/me')).status, 401);

    const password = page.getByRole('region', { name: 'Password', exact: true });
    await password.getByLabel('Current password').fill('self-1-secret');
    await password.getByLabel('New password', { exact: true }).fill('self-1-new-secret');
    await password.getByLabel('Repeat new password').fill('self-1-new-secret');
    await password.getByRole('button', { name: 'Change password' }).click();
    await password.getByText('Your password was changed.').waitFor();
  });
  await login(broker.base, 'self-1', 'self-1-new-secret');
});

test('/admin?apiToken= signs in, goes to the redirect on this server and leaves the address bar', async () => {
  const token = await login(broker.base, 'admin', ADMIN_PASSWORD, { expireTimeInHours: 24 * 365, label: 'kiosk' });
  await scenario(async ({ page }) => {
    await page.goto(`${broker.base}/admin?redirect=${encodeURIComponent('/admin#/clients')}&apiToken=${token}`);
    await page.getByRole('heading', { name: 'Connected clients and sessions' }).waitFor();
    assert.ok(!page.url().includes('apiToken'), page.url());
    assert.equal(new URL(page.url()).pathname, '/admin');
  });
  await scenario(async ({ page }) => {
    await page.goto(`${broker.base}/admin?redirect=${encodeURIComponent('//evil.example/')}&apiToken=${token}`);
    await page.getByText('not on this server').waitFor();
    assert.equal(new URL(page.url()).host, new URL(broker.base).host);
    assert.ok(!page.url().includes('apiToken'));
  });
  await scenario(async ({ page }) => {
    await page.goto(`${broker.base}/admin?apiToken=not-a-token`);
    await page.getByText('The token in the link is not valid').waitFor();
    assert.ok(!page.url().includes('apiToken'));
  });
});

test('disconnect a connected mosquitto_sub and disable its user', async () => {
  await createUser('kicked-1', 'kicked-1-secret', { initialPermissions: [{ resource: 'k/#', operation: 'read', context: 'mqtt' }] });
  const sub = mosquittoSub(broker.mqttPort, 'kicked-1', 'kicked-1-secret', 'kicked-sub', 'k/#');
  try {
    await until('the client to connect', async () => (await admin('GET', '/api/clients')).body.clients.some((c) => c.clientId === 'kicked-sub'));
    await scenario(async ({ page }) => {
      await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
      await page.getByRole('link', { name: 'Connected clients' }).click();
      await page.getByLabel('Search connected clients').fill('kicked');
      await page.getByRole('button', { name: 'Search' }).first().click();
      const row = page.getByRole('row').filter({ hasText: 'kicked-sub' }).first();
      await row.waitFor();
      await shot(page, 'clients');
      await row.getByRole('button', { name: 'Disconnect kicked-sub' }).click();
      const dialog = page.getByRole('dialog', { name: 'Disconnect kicked-sub' });
      await dialog.getByLabel(/And disable the user kicked-1/).check();
      await dialog.getByRole('button', { name: 'Disconnect' }).click();
      await dialog.waitFor({ state: 'detached' });
    });
    const code = await Promise.race([sub.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    assert.notEqual(code, 'still running', `mosquitto_sub did not stop: ${sub.output()}`);
    const user = (await admin('GET', '/api/users?username[eq]=kicked-1')).body[0];
    assert.equal(user.enabled, false);
  } finally {
    sub.kill();
  }
});

test('stored sessions can be removed', async () => {
  await createUser('stored-1', 'stored-1-secret', { initialPermissions: [{ resource: 's/#', operation: 'read', context: 'mqtt' }] });
  // A persistent session (clean start off, expiry an hour), then gone.
  const sub = mosquittoSub(broker.mqttPort, 'stored-1', 'stored-1-secret', 'stored-sub', 's/#', ['-c', '-x', '3600', '-C', '1', '-W', '1']);
  await sub.exited;
  await scenario(async ({ page }) => {
    await signIn(page, broker.base, 'admin', ADMIN_PASSWORD);
    await page.goto(`${broker.base}/admin#/clients`);
    const row = page.getByRole('row').filter({ hasText: 'stored-sub' });
    await row.getByRole('button', { name: 'Remove session stored-sub' }).click();
    await page.getByRole('dialog', { name: 'Remove session' }).getByRole('button', { name: 'Remove session' }).click();
    await row.waitFor({ state: 'detached' });
  });
  const sessions = (await admin('GET', '/api/sessions')).body.sessions;
  assert.ok(!sessions.some((s) => s.clientId === 'stored-sub'));
});

test('a user with read-only HTTP permissions sees no write controls', async () => {
  await admin('POST', '/api/roles', { name: 'ro-role', permissions: [{ resource: 'ro/#', operation: 'read', context: 'mqtt' }] });
  await createUser('ro-target', 'ro-target-secret');
  await createUser('auditor-1', 'auditor-1-secret', { initialPermissions: [{ resource: '/api/#', operation: 'read', context: 'http' }] });
  const sub = mosquittoSub(broker.mqttPort, 'admin', ADMIN_PASSWORD, 'ro-visible', 'x/#');
  try {
    await until('the client to connect', async () => (await admin('GET', '/api/clients')).body.clients.some((c) => c.clientId === 'ro-visible'));
    await scenario(async ({ page }) => {
      await signIn(page, broker.base, 'auditor-1', 'auditor-1-secret');
      const noWrites = async (names) => {
        for (const name of names) assert.equal(await page.getByRole('button', { name }).count(), 0, `${name} is shown`);
      };
      await page.getByRole('heading', { name: 'Users' }).waitFor();
      await page.getByLabel('Search users').fill('ro-target');
      await page.getByRole('button', { name: 'Search' }).click();
      await page.getByRole('link', { name: 'ro-target' }).waitFor();
      await noWrites(['Add user']);
      await page.getByRole('link', { name: 'ro-target' }).click();
      await page.getByRole('heading', { name: 'Effective permissions' }).waitFor();
      await page.getByRole('region', { name: 'Access checker' }).waitFor();
      await noWrites(['Disable user', 'Change password', 'Delete user', 'Save changes', 'Add permission', /^Revoke/]);
      await page.goto(`${broker.base}/admin#/roles`);
      await page.getByRole('link', { name: 'ro-role' }).click();
      await page.getByRole('heading', { name: 'Role ro-role' }).waitFor();
      await noWrites(['Add role', 'Save changes', 'Delete role', 'Copy permissions']);
      await page.goto(`${broker.base}/admin#/registry`);
      await page.getByRole('heading', { name: 'Client registry' }).waitFor();
      await noWrites(['Unlock registry', 'Lock registry', /^Confirm/, /^Reject/]);
      await page.goto(`${broker.base}/admin#/clients`);
      await page.getByRole('row').filter({ hasText: 'ro-visible' }).first().waitFor();
      await noWrites([/^Disconnect/, /^Remove session/]);
      await shot(page, 'read-only');
    });
  } finally {
    sub.kill();
  }
});

test('a cross-site write with the session cookie is refused', async () => {
  const r = await fetch(`${broker.base}/admin/session`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Origin: 'http://evil.example', 'Sec-Fetch-Site': 'cross-site' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  });
  assert.equal(r.status, 403);
});
