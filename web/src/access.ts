// What the signed-in user may do, derived from their permissions as the
// API returns them (GET /api/users/me), with the broker's rules
// (identity/http_access.rs): the path is matched like an MQTT topic, GET
// needs read, anything else write, a deny wins, and a few self-service
// routes are always open. Controls the user may not use are not shown;
// the server still decides every call.

import type { Permission, User } from './api';

/** MQTT filter matching (protocol/topic.rs `matches`). */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const levels = topic.split('/');
  let i = 0;
  for (const level of filter.split('/')) {
    if (level === '#') return true;
    if (level === '+') {
      if (i >= levels.length) return false;
      i += 1;
    } else {
      if (levels[i] !== level) return false;
      i += 1;
    }
  }
  return i === levels.length;
}

// The routes any signed-in user may call on themselves.
const SELF: [string, RegExp][] = [
  ['GET', /^\/api\/users\/me$/],
  ['GET', /^\/api\/users\/([^/]+)$/],
  ['PUT', /^\/api\/users\/([^/]+)\/password$/],
  ['GET', /^\/api\/users\/([^/]+)\/tokens$/],
  ['DELETE', /^\/api\/users\/([^/]+)\/tokens$/],
  ['DELETE', /^\/api\/users\/([^/]+)\/tokens\/[^/]+$/],
];
const OWN = ['/api/mfa/enroll', '/api/mfa/confirm', '/api/mfa/disable', '/api/mfa/backup-codes'];

export class Access {
  private readonly http: Permission[];

  constructor(readonly me: User, readonly enrolOnly = false) {
    this.http = [...me.permissions, ...me.roles.flatMap((r) => r.permissions)].filter((p) => p.context === 'http');
  }

  /** Whether `method` on `path` (a concrete path, `me` allowed) would pass. */
  may(method: string, path: string): boolean {
    const concrete = path.replace(/^\/api\/users\/me(?=\/|$)/, `/api/users/${this.me.id}`);
    if (this.enrolOnly) {
      return (method === 'GET' && path === '/api/users/me') || (method === 'POST' && (path === '/api/mfa/enroll' || path === '/api/mfa/confirm'));
    }
    if (method === 'POST' && OWN.includes(path)) return true;
    for (const [m, pattern] of SELF) {
      const found = pattern.exec(path);
      if (m === method && found && (found[1] === undefined || found[1] === 'me' || found[1] === this.me.id)) return true;
    }
    const write = method !== 'GET' && method !== 'HEAD';
    let allowed = false;
    for (const p of this.http) {
      const fits = write ? p.operation !== 'read' : p.operation !== 'write';
      if (!fits || !topicMatches(p.resource, concrete)) continue;
      if (p.effect === 'deny') return false;
      allowed = true;
    }
    return allowed;
  }
}
