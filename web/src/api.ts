// Talks to the Conclave server: token requests and invitation tokens.

/** Everything needed to connect to a room. */
export interface Session {
  token: string;
  room: string;
  name: string;
  identity?: string;
  /**
   * 'open': token obtained from /api/join; 'invite': token from an invitation
   * link; 'meeting': token from admission to a meeting (/m/<id>).
   */
  source: 'open' | 'invite' | 'meeting';
  /** The meeting's id, for the meetings API calls made from inside it. */
  meetingId?: string;
  /** The meeting's title, shown instead of the room name. */
  title?: string;
  /**
   * The meeting's end-to-end encryption key, from the link's `#key=` part.
   * It stays in the browser: the part after `#` is never sent to a server.
   */
  e2eeKey?: string;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The signalling URL is the page's own origin; livekit-client appends /rtc. */
export function signallingUrl(): string {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${window.location.host}`;
}

/** Asks the server for an access token to an open room. */
export async function requestJoinToken(room: string, name: string): Promise<Session> {
  let response: Response;
  try {
    response = await fetch('/api/join', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ room, name }),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError('The server could not be reached. Check your network connection and try again.');
  }

  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: handled below.
  }

  if (!response.ok) {
    const message = isRecord(body) && typeof body.error === 'string' && body.error.trim() !== '' ? body.error : null;
    throw new ApiError(message ?? `The server refused the request (HTTP ${response.status}).`, response.status);
  }
  if (!isRecord(body) || typeof body.token !== 'string' || body.token === '') {
    throw new ApiError('The server sent an unexpected answer.', response.status);
  }
  const session: Session = { token: body.token, room, name, source: 'open' };
  if (typeof body.identity === 'string') session.identity = body.identity;
  return session;
}

/** What an access token says about itself (unverified; for display only). */
export interface TokenInfo {
  room?: string;
  name?: string;
  identity?: string;
  expiresAt?: Date;
}

export function readToken(token: string): TokenInfo | null {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (!isRecord(claims)) return null;
    const info: TokenInfo = {};
    if (typeof claims.name === 'string') info.name = claims.name;
    if (typeof claims.sub === 'string') info.identity = claims.sub;
    if (typeof claims.exp === 'number') info.expiresAt = new Date(claims.exp * 1000);
    if (isRecord(claims.video) && typeof claims.video.room === 'string') info.room = claims.video.room;
    return info;
  } catch {
    return null;
  }
}

/**
 * Reads `#token=<jwt>` (an invitation link) or `#room=<name>`, and
 * `key=<end-to-end key>`, from the address, then removes a token or key so
 * that neither lingers in the address bar or the history.
 */
export function takeHashParams(): { token?: string; room?: string; key?: string } {
  const hash = window.location.hash.replace(/^#/, '');
  if (hash === '') return {};
  const params = new URLSearchParams(hash);
  const result: { token?: string; room?: string; key?: string } = {};
  const token = params.get('token');
  const room = params.get('room');
  const key = params.get('key');
  if (token) result.token = token;
  if (room) result.room = room;
  if (key) result.key = key;
  if (token || key) {
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  return result;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
