// The admin API, called with the session cookie (never a token in
// script: the cookie is HttpOnly). Writes always send a JSON body, which
// the server requires of cookie-authenticated writes (CSRF).

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Reply<T> {
  body: T;
  headers: Headers;
}

let onSessionLost: () => void = () => {};

/** Called when the API says the session's token is no longer good. */
export function whenSessionLost(f: () => void): void {
  onSessionLost = f;
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<Reply<T>> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const init: RequestInit = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET' && method !== 'DELETE') {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'The broker did not answer (is it running?).');
  }
  const text = await response.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }
  if (!response.ok) {
    const error = parsed as { error?: string; message?: string } | undefined;
    const code = error?.error ?? 'http_' + response.status;
    const message = error?.message ?? `The broker answered ${response.status} ${response.statusText}.`;
    if (response.status === 401 && (code === 'invalid_token' || code === 'unauthorized') && path.startsWith('/api/')) {
      onSessionLost();
    }
    throw new ApiError(response.status, code, message);
  }
  return { body: parsed as T, headers: response.headers };
}

export async function get<T>(path: string): Promise<T> {
  return (await request<T>('GET', path)).body;
}

export async function post<T>(path: string, body?: unknown): Promise<T> {
  return (await request<T>('POST', path, body)).body;
}

export async function put<T>(path: string, body?: unknown): Promise<T> {
  return (await request<T>('PUT', path, body)).body;
}

export async function del(path: string): Promise<void> {
  await request<unknown>('DELETE', path);
}

/** A path segment, percent-encoded. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}

export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? '?' + s : '';
}

// The API's shapes (docs/api.md).

export type Operation = 'read' | 'write' | 'readWrite';
export type Context = 'mqtt' | 'http';

export interface Permission {
  id?: string;
  resource: string;
  operation: Operation;
  context: Context;
  effect?: 'allow' | 'deny';
}

export interface Role {
  id: string;
  name: string;
  isShared?: boolean;
  permissions: Permission[];
}

export interface Token {
  fingerprint: string;
  label?: string | null;
  createdAt: number;
  expiresAt: number;
}

export interface GrantType {
  method: 'password' | 'certificate';
  isRequired: boolean;
}

export interface User {
  id: string;
  username: string;
  mqttPublishPrefix?: string | null;
  grantTypes: GrantType[];
  tokens: Token[];
  roles: Role[];
  permissions: Permission[];
  mfa_is_enrolled: boolean;
  enforceMFAEnrollment: boolean;
  enabled: boolean;
  createdAt: number;
  updatedAt: number;
}

export interface Pagination {
  pageNumber: number;
  rowsPerPage: number;
  totalRows: number;
  totalPages: number;
}

export interface Session {
  signedIn: boolean;
  userId?: string;
  username?: string;
  expiresAt?: number;
  fingerprint?: string;
  mfaEnrollmentRequired: boolean;
  /** Sign-in only: the password was right; send the code too. */
  mfaRequired?: boolean;
}
