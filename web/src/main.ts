// The admin page: signs in (views/signin.ts), then shows the views the
// signed-in user's permissions allow, routed by the address's fragment
// (#/users, #/roles, #/registry, #/clients, #/settings).

import './style.css';
import { Access } from './access';
import { ApiError, del, get, whenSessionLost, type Session, type User } from './api';
import { clear, h, showError, errorSlot } from './dom';
import { signIn } from './views/signin';
import { usersView } from './views/users';
import { userView } from './views/user';
import { rolesView, roleView } from './views/roles';
import { registryView } from './views/registry';
import { clientsView } from './views/clients';
import { settingsView } from './views/settings';

/** What a view gets; `onLeave` cleanups run when another view is shown. */
export interface Ctx {
  access: Access;
  session: Session;
  root: HTMLElement;
  onLeave: (cleanup: () => void) => void;
  /** Reloads the signed-in user (after changing oneself). */
  refreshMe: () => Promise<void>;
  go: (hash: string) => void;
}

interface ViewDef {
  hash: string;
  title: string;
  allowed: (a: Access) => boolean;
}

const VIEWS: ViewDef[] = [
  { hash: '#/users', title: 'Users', allowed: (a) => a.may('GET', '/api/users') },
  { hash: '#/roles', title: 'Roles', allowed: (a) => a.may('GET', '/api/roles') },
  { hash: '#/registry', title: 'Client registry', allowed: (a) => a.may('GET', '/api/client-registry') },
  { hash: '#/clients', title: 'Connected clients', allowed: (a) => a.may('GET', '/api/clients') || a.may('GET', '/api/sessions') },
  { hash: '#/settings', title: 'Settings', allowed: () => true },
];

const app = document.getElementById('app')!;
let cleanups: (() => void)[] = [];

function leave(): void {
  for (const f of cleanups) f();
  cleanups = [];
}

/** Why an `/admin?apiToken=` sign-in did not work (set by the server). */
const SIGNIN_NOTES: Record<string, string> = {
  'invalid-token': 'The token in the link is not valid (expired, revoked, or not a token). Sign in with your password instead.',
  'bad-redirect': 'Signed in, but the link asked to go to a place that is not on this server, so you are here instead.',
  'rate-limited': 'Too many failed attempts from this address; wait a minute and try again.',
};

async function boot(note?: string): Promise<void> {
  leave();
  let session: Session;
  try {
    session = await get<Session>('/admin/session');
  } catch (e) {
    const slot = errorSlot();
    clear(app, h('main', { class: 'narrow' }, h('h1', null, 'Gatehouse'), slot));
    showError(slot, e);
    return;
  }
  if (!session.signedIn) {
    signIn(app, note, () => void boot());
    return;
  }
  let me: User;
  try {
    me = await get<User>('/api/users/me');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      signIn(app, note, () => void boot());
      return;
    }
    throw e;
  }
  shell(session, new Access(me, session.mfaEnrollmentRequired), note);
}

function shell(session: Session, initial: Access, note?: string): void {
  let access = initial;
  const nav = h('nav', { 'aria-label': 'Views' });
  const main = h('main', { id: 'view', tabindex: '-1' });
  const banner = h('div', { class: 'banners' });
  const signOut = h('button', { type: 'button', class: 'link' }, 'Sign out');
  const signOutError = errorSlot();
  signOut.addEventListener('click', async () => {
    try {
      await del('/admin/session');
      // No view may run (and call the API) once the cookie is gone.
      window.onhashchange = null;
      leave();
      history.replaceState(null, '', location.pathname);
      void boot();
    } catch (e) {
      showError(signOutError, e);
    }
  });
  clear(
    app,
    h(
      'header',
      null,
      h('a', { href: '#/', class: 'brand' }, 'Gatehouse'),
      nav,
      h('div', { class: 'who' }, h('span', null, 'Signed in as ', h('strong', null, session.username ?? '')), signOut, signOutError),
    ),
    banner,
    main,
  );

  const drawNav = () => {
    clear(
      nav,
      h(
        'ul',
        null,
        VIEWS.filter((v) => v.allowed(access)).map((v) => h('li', null, h('a', { href: v.hash, 'data-view': v.hash }, v.title))),
      ),
    );
    clear(banner);
    if (note) banner.append(h('p', { class: 'note', role: 'status' }, note));
    if (session.mfaEnrollmentRequired) {
      banner.append(h('p', { class: 'warning', role: 'status' }, 'You must turn on multi-factor authentication before you can do anything else. ', h('a', { href: '#/settings' }, 'Enable it in Settings'), '; then sign in again.'));
    } else if (!access.me.mfa_is_enrolled) {
      banner.append(h('p', { class: 'note', role: 'status' }, 'Multi-factor authentication is off for your account. ', h('a', { href: '#/settings' }, 'Enable it in Settings'), '.'));
    }
  };

  const ctx: Ctx = {
    get access() {
      return access;
    },
    session,
    root: main,
    onLeave: (f) => cleanups.push(f),
    refreshMe: async () => {
      access = new Access(await get<User>('/api/users/me'), session.mfaEnrollmentRequired);
      drawNav();
    },
    go: (hash) => {
      if (location.hash === hash) route();
      else location.hash = hash;
    },
  };

  const route = () => {
    leave();
    drawNav();
    const hash = location.hash || '#/';
    const [, view, id] = hash.split('/');
    const allowed = VIEWS.filter((v) => v.allowed(access));
    const def = VIEWS.find((v) => v.hash === `#/${view}`);
    for (const a of nav.querySelectorAll('a')) {
      if (a.dataset.view === `#/${view}`) a.setAttribute('aria-current', 'page');
    }
    clear(main);
    if (!def || !def.allowed(access)) {
      const first = session.mfaEnrollmentRequired ? VIEWS[VIEWS.length - 1] : allowed[0];
      if (hash !== first.hash) {
        location.replace(first.hash);
        return;
      }
    }
    // A sign-in note stays with the first view shown, not the next ones.
    note = undefined;
    document.title = `${def?.title ?? 'Gatehouse'} - Gatehouse admin`;
    const decoded = id ? decodeURIComponent(id) : undefined;
    const render = async () => {
      switch (view) {
        case 'users':
          return decoded ? userView(ctx, decoded) : usersView(ctx);
        case 'roles':
          return decoded ? roleView(ctx, decoded) : rolesView(ctx);
        case 'registry':
          return registryView(ctx);
        case 'clients':
          return clientsView(ctx);
        default:
          return settingsView(ctx);
      }
    };
    render().catch((e) => {
      const slot = errorSlot();
      main.append(slot);
      showError(slot, e);
    });
  };

  window.onhashchange = route;
  whenSessionLost(() => {
    window.onhashchange = null;
    void boot('Your session ended (signed out, expired or revoked). Sign in again.');
  });
  route();
}

const params = new URLSearchParams(location.search);
const signin = params.get('signin');
if (location.search) history.replaceState(null, '', location.pathname + location.hash);
void boot(signin ? (SIGNIN_NOTES[signin] ?? undefined) : undefined);
