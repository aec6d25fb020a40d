// What the browser tests share: a broker of their own (the debug binary,
// on free loopback ports, in a temporary data directory), Debian's
// Chromium driven by playwright-core (never a downloaded browser), pages
// that fail the test on any console error or CSP violation, TOTP codes
// computed here (RFC 6238, independently of the broker), and the MQTT
// command-line clients.

import { spawn, execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const run = promisify(execFile);
const repo = resolve(new URL('.', import.meta.url).pathname, '../..');

export const ADMIN_PASSWORD = 'e2e-admin-secret-1';
/** Where screenshots go: docs/images when GATEHOUSE_SCREENSHOTS says so. */
export const SHOTS = process.env.GATEHOUSE_SCREENSHOTS
  ? resolve(process.env.GATEHOUSE_SCREENSHOTS)
  : mkdtempSync(join(tmpdir(), 'gatehouse-shots-'));
mkdirSync(SHOTS, { recursive: true });

async function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts the broker; resolves once its HTTP port answers. */
export async function startBroker() {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-'));
  const mqtt = await freePort();
  const http = await freePort();
  const config = join(dir, 'broker.toml');
  mkdirSync(join(dir, 'certs'));
  writeFileSync(
    config,
    [
      '[listeners]',
      `mqtt = "127.0.0.1:${mqtt}"`,
      'ws = ""',
      'mqtts = ""',
      'wss = ""',
      `http = "127.0.0.1:${http}"`,
      'https = ""',
      '[storage]',
      `dir = "${join(dir, 'data')}"`,
      'durability = "periodic"',
      '[tls]',
      `dir = "${join(dir, 'certs')}"`,
      '',
    ].join('\n'),
  );
  const bin = process.env.GATEHOUSE_BIN ?? join(repo, 'target/debug/gatehouse');
  const child = spawn(bin, ['serve', '--config', config], {
    env: {
      ...process.env,
      GATEHOUSE_INITIAL_ADMIN_PASSWORD: Buffer.from(ADMIN_PASSWORD).toString('base64'),
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exited = null;
  child.on('exit', (code) => (exited = code));
  // Never left running, however the tests end.
  process.on('exit', () => exited === null && child.kill('SIGKILL'));
  const base = `http://127.0.0.1:${http}`;
  for (let i = 0; i < 200; i += 1) {
    if (exited !== null) throw new Error(`the broker exited with ${exited}`);
    try {
      const r = await fetch(`${base}/api/health`);
      if (r.ok || r.status < 500) break;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  return {
    base,
    mqttPort: mqtt,
    async stop() {
      child.kill('SIGTERM');
      for (let i = 0; i < 100 && exited === null; i += 1) await sleep(50);
      if (exited === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}

/**
 * A fresh browser context and page. Every console error, page error and
 * CSP violation is collected; `check()` throws if there was one, except
 * failed requests the test said it expects (`expectFailure`).
 */
export async function openPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  const expected = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const url = msg.location()?.url ?? '';
    const text = msg.text();
    const i = expected.findIndex((e) => url.includes(e.path) && text.includes(`status of ${e.status}`));
    if (i >= 0) {
      expected.splice(i, 1);
      return;
    }
    problems.push(`console error: ${text} (${url})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // For the report: which calls failed, and in what order.
  const failed = [];
  page.on('response', (r) => {
    if (r.status() >= 400) failed.push(`${r.request().method()} ${r.url()} -> ${r.status()}`);
  });
  // Reported by the browser; the listener runs in the page's isolated
  // world, so the page's own policy does not stop it.
  await page.exposeFunction('__cspViolation', (what) => problems.push(`CSP violation: ${what}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolation(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });
  return {
    page,
    context,
    /** A request to `path` is expected to fail with `status` once. */
    expectFailure(path, status) {
      expected.push({ path, status });
    },
    check() {
      if (problems.length) throw new Error([...problems, 'failed requests:', ...failed].join('\n'));
    },
    /** After a failure: a screenshot and what went wrong on the page. */
    async report(name) {
      await page.screenshot({ path: join(SHOTS, `failed-${name}.png`), fullPage: true }).catch(() => {});
      return [`page ${page.url()}; screenshot failed-${name}.png in ${SHOTS}`, ...problems, 'failed requests:', ...failed].join('\n');
    },
    async close() {
      await context.close();
    },
  };
}

/**
 * Every form control has a label (`<label for>` or `aria-label`) and every
 * button a name: people and tests find them by name.
 */
export async function assertNamed(page) {
  const bad = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden') continue;
      if (!el.labels?.length && !el.getAttribute('aria-label')) out.push(el.outerHTML);
    }
    for (const b of document.querySelectorAll('button')) {
      if (!b.textContent.trim() && !b.getAttribute('aria-label')) out.push(b.outerHTML);
    }
    return out;
  });
  if (bad.length) throw new Error(`controls without a name:\n${bad.join('\n')}`);
}

/** Signs in through the page's form; leaves the page on its first view. */
export async function signIn(page, base, username, password, second) {
  await page.goto(`${base}/admin`);
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (second?.otp || second?.backupCode) {
    const otp = page.getByLabel('Authentication code');
    await otp.waitFor();
    if (second.otp) {
      await otp.fill(second.otp());
    } else {
      await page.getByRole('button', { name: 'Use a backup code instead' }).click();
      await page.getByLabel('Backup code').fill(second.backupCode);
    }
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** The admin API with a bearer token (set up and check what the page did). */
export function api(base, token) {
  return async (method, path, body) => {
    const r = await fetch(base + path, {
      method,
      headers: {
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  };
}

export async function login(base, username, password, extra = {}) {
  const r = await api(base)('POST', '/api/login', { username, password, ...extra });
  if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token;
}

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s), computed here, not by the broker.
export function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    value = ((value << 5) | i) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function totp(secret, step, digits = 6) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', secret).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(code).padStart(digits, '0');
}

export const currentStep = () => Math.floor(Date.now() / 1000 / 30);

export async function mosquittoPub(port, username, password, topic, message) {
  return run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-V', '5', '-q', '1', '-u', username, '-P', password, '-t', topic, '-m', message], { timeout: 10_000 });
}

/** A running mosquitto_sub; `output()` is what it printed, `exited` its end. */
export function mosquittoSub(port, username, password, clientId, topic, extra = []) {
  const child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-V', '5', '-u', username, '-P', password, '-i', clientId, '-t', topic, '-v', ...extra]);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise((ok) => child.on('exit', (code) => ok(code)));
  return { child, exited, output: () => out, kill: () => child.kill('SIGKILL') };
}

export async function until(what, check, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

export async function curl(args) {
  const { stdout } = await run('curl', ['-s', '-w', '\n%{http_code}', ...args], { timeout: 10_000 });
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}
