// Talks to the server's account API (/api/account). Every state-changing
// request carries the session's CSRF token; the session itself lives in an
// HttpOnly cookie that scripts never see.

export class AccountError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'AccountError';
  }
}

export type Level = 'second_factor' | 'must_enrol' | 'full';

export interface PasskeyInfo {
  id: string;
  name: string;
  created_at: number;
  last_used_at: number | null;
}

export interface Account {
  id: string;
  email: string | null;
  display_name: string;
  role: 'user' | 'admin';
  has_password: boolean;
  totp: boolean;
  passkeys: PasskeyInfo[];
  recovery_codes_left: number;
  second_factor_required: boolean;
  identities: string[];
}

export interface Me {
  level: Level;
  csrf: string;
  account: Account;
}

export interface ServerConfig {
  self_registration: boolean;
  passkeys: boolean;
  min_password_length: number;
  oidc: { id: string; name: string }[];
}

export interface SessionInfo {
  id: string;
  current: boolean;
  created_at: number;
  last_seen_at: number;
  user_agent: string;
}

export interface UserInfo {
  id: string;
  email: string | null;
  display_name: string;
  role: 'user' | 'admin';
  status: 'pending' | 'active' | 'disabled';
  created_at: number;
  second_factor: boolean;
}

export interface AuditEntry {
  at: number;
  actor: string;
  action: string;
  subject: string;
  detail: string;
}

let csrf: string | null = null;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method === 'POST') {
    headers['Content-Type'] = 'application/json';
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  let response: Response;
  try {
    const init: RequestInit = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (method === 'POST') init.body = JSON.stringify(body ?? {});
    response = await fetch(`/api/account${path}`, init);
  } catch {
    throw new AccountError('The server could not be reached. Check your network connection and try again.', 0);
  }
  let data: unknown = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON: handled below.
  }
  if (!response.ok) {
    const message = isRecord(data) && typeof data.error === 'string' ? data.error : `The server refused the request (HTTP ${response.status}).`;
    throw new AccountError(message, response.status);
  }
  if (isRecord(data) && typeof data.csrf === 'string') csrf = data.csrf;
  return data as T;
}

export const get = <T>(path: string): Promise<T> => call<T>('GET', path);
export const post = <T>(path: string, body?: unknown): Promise<T> => call<T>('POST', path, body);

/** The current session, or null when not signed in. */
export async function me(): Promise<Me | null> {
  try {
    return await get<Me>('/me');
  } catch (err) {
    if (err instanceof AccountError && err.status === 401) {
      csrf = null;
      return null;
    }
    throw err;
  }
}

export function forgetSession(): void {
  csrf = null;
}

/** The session's CSRF token, once `me()` or a sign-in step has returned it. */
export function csrfToken(): string | null {
  return csrf;
}

const RETURN_KEY = 'conclave.returnTo';

/** Remembers a page of this app to return to after signing in (same tab only). */
export function setReturnPath(path: string): void {
  if (!isLocalPath(path)) return;
  try {
    window.sessionStorage.setItem(RETURN_KEY, path);
  } catch {
    // Storage unavailable: the user comes back by hand.
  }
}

/** The page to return to after signing in, taken (it is used once). */
export function takeReturnPath(): string | null {
  try {
    const path = window.sessionStorage.getItem(RETURN_KEY);
    window.sessionStorage.removeItem(RETURN_KEY);
    return path && isLocalPath(path) ? path : null;
  } catch {
    return null;
  }
}

/** A path on this origin: one leading slash, never a scheme or another host. */
function isLocalPath(path: string): boolean {
  return /^\/(?![\/\\])[^\s]*$/.test(path) && !path.startsWith('/api/');
}
