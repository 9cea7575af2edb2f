// The meetings API (/api/meetings, docs/meetings.md): meetings of the
// signed-in account, the invitation page, entering and waiting in the
// lobby, and the calls made from inside a meeting with the participant's
// access token.

import { csrfToken } from '../account/api';

export type Right = 'everyone' | 'hosts';
export const RIGHT_NAMES = ['microphone', 'camera', 'screen_share', 'chat', 'files'] as const;
export type RightName = (typeof RIGHT_NAMES)[number];
export type Rights = Record<RightName, Right>;
export type Role = 'owner' | 'host' | 'cohost' | 'participant' | 'guest';
export type InviteeRole = 'participant' | 'cohost' | 'host';

export const RIGHT_LABELS: Record<RightName, string> = {
  microphone: 'Microphone',
  camera: 'Camera',
  screen_share: 'Screen sharing',
  chat: 'Chat',
  files: 'Files',
};

export const ROLE_LABELS: Record<Role, string> = {
  owner: 'owner',
  host: 'host',
  cohost: 'co-host',
  participant: 'participant',
  guest: 'guest',
};

export const DEFAULT_RIGHTS: Rights = { microphone: 'everyone', camera: 'everyone', screen_share: 'hosts', chat: 'everyone', files: 'hosts' };

export interface Invitee {
  kind: 'email' | 'domain' | 'group';
  value: string;
  role: InviteeRole;
}

export interface MeetingSpec {
  title: string;
  starts_at: number | null;
  ends_at: number | null;
  access: 'invited' | 'link';
  lobby: 'everyone' | 'uninvited';
  guests: boolean;
  /** Absent or null keeps the current passcode; "" removes it. */
  passcode?: string | null;
  invitees: Invitee[];
  rights: Rights;
}

/** A meeting as listed or loaded for editing. */
export interface Meeting extends MeetingSpec {
  id: string;
  /** The caller's role in it. */
  role?: Role | 'invited';
  owner?: boolean;
  has_passcode?: boolean;
  locked?: boolean;
  /** The invitation link as the server states it. */
  link?: string;
}

export interface Invitation {
  id: string;
  title: string;
  owner_name: string;
  owner_domain: string | null;
  starts_at: number | null;
  ends_at: number | null;
  passcode: boolean;
  guests: boolean;
  signed_in: boolean;
  locked: boolean;
  /** The server's own public address, as configured. */
  service: string | null;
}

export type LobbyStateName = 'waiting' | 'admitted' | 'denied' | 'ended' | 'locked' | 'left';

export interface Admission {
  token: string;
  identity?: string;
  name?: string;
}

export type EnterResult = { admitted: Admission } | { ticket: string; state: LobbyStateName };

export interface LobbyState {
  state: LobbyStateName;
  token?: string;
  identity?: string;
}

export interface WaitingPerson {
  ticket: string;
  name: string;
  guest: boolean;
  verified: string | null;
  /** Whether the person is on the invitation list (or came with the link). */
  invited: boolean | null;
  since: number;
}

export interface SharedFileInfo {
  id: string;
  name: string;
  size: number;
  type: string;
  from: string;
}

export interface MeetingState {
  role: Role;
  /** What this participant may do now. */
  rights: Record<RightName, boolean>;
  /** What the meeting gives everyone. */
  meeting_rights: Rights;
  locked: boolean;
  lobby: WaitingPerson[];
  files: SharedFileInfo[];
  title?: string;
}

export class MeetingError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'MeetingError';
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface CallOptions {
  method?: 'GET' | 'POST';
  body?: unknown;
  /** The participant's access token, for calls from inside a meeting. */
  bearer?: string;
  /** Raw body (file uploads) with its headers. */
  raw?: { data: Blob; headers: Record<string, string> };
  signal?: AbortSignal;
}

interface Answer {
  status: number;
  data: unknown;
}

async function call(path: string, options: CallOptions = {}): Promise<Answer> {
  const method = options.method ?? (options.body !== undefined || options.raw ? 'POST' : 'GET');
  const headers: Record<string, string> = { Accept: 'application/json' };
  const init: RequestInit = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (options.signal) init.signal = options.signal;
  if (options.bearer) headers.Authorization = `Bearer ${options.bearer}`;
  if (method === 'POST') {
    const csrf = csrfToken();
    if (csrf) headers['X-CSRF-Token'] = csrf;
    if (options.raw) {
      Object.assign(headers, options.raw.headers);
      init.body = options.raw.data;
    } else {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body ?? {});
    }
  }
  let response: Response;
  try {
    response = await fetch(`/api/meetings${path}`, init);
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new MeetingError('The server could not be reached. Check your network connection and try again.', 0);
  }
  let data: unknown = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON: handled below.
  }
  if (!response.ok) {
    const message = isRecord(data) && typeof data.error === 'string' && data.error !== '' ? data.error : `The server refused the request (HTTP ${response.status}).`;
    const retry = Number(response.headers.get('Retry-After'));
    throw new MeetingError(message, response.status, Number.isFinite(retry) && retry > 0 ? retry : undefined);
  }
  return { status: response.status, data };
}

const seg = (s: string) => encodeURIComponent(s);

// ---------- the account's meetings ----------

export async function listMeetings(): Promise<Meeting[]> {
  const { data } = await call('/');
  const list = Array.isArray(data) ? data : isRecord(data) && Array.isArray(data.meetings) ? data.meetings : [];
  return list.filter(isRecord).map((m) => normaliseMeeting(m));
}

export async function loadMeeting(id: string): Promise<Meeting> {
  const { data } = await call(`/${seg(id)}`);
  const m = isRecord(data) && isRecord(data.meeting) ? data.meeting : data;
  if (!isRecord(m)) throw new MeetingError('The server sent an unexpected answer.', 200);
  return normaliseMeeting(m);
}

export async function createMeeting(spec: MeetingSpec): Promise<Meeting> {
  const { data } = await call('/', { body: spec });
  const m = isRecord(data) && isRecord(data.meeting) ? data.meeting : data;
  if (!isRecord(m) || typeof m.id !== 'string') throw new MeetingError('The server sent an unexpected answer.', 200);
  return normaliseMeeting({ ...spec, ...m });
}

export async function updateMeeting(id: string, spec: MeetingSpec): Promise<void> {
  await call(`/${seg(id)}`, { body: spec });
}

export async function deleteMeeting(id: string): Promise<void> {
  await call(`/${seg(id)}/delete`, { body: {} });
}

function normaliseMeeting(m: Record<string, unknown>): Meeting {
  const rights = isRecord(m.rights) ? m.rights : {};
  const r = { ...DEFAULT_RIGHTS };
  for (const name of RIGHT_NAMES) if (rights[name] === 'everyone' || rights[name] === 'hosts') r[name] = rights[name] as Right;
  const meeting: Meeting = {
    id: String(m.id ?? ''),
    title: typeof m.title === 'string' ? m.title : '',
    starts_at: typeof m.starts_at === 'number' ? m.starts_at : null,
    ends_at: typeof m.ends_at === 'number' ? m.ends_at : null,
    access: m.access === 'link' ? 'link' : 'invited',
    lobby: m.lobby === 'uninvited' ? 'uninvited' : 'everyone',
    guests: m.guests === true,
    invitees: Array.isArray(m.invitees) ? m.invitees.filter(isRecord).map((i) => ({ kind: i.kind === 'domain' || i.kind === 'group' ? i.kind : 'email', value: String(i.value ?? ''), role: i.role === 'host' || i.role === 'cohost' ? i.role : 'participant' })) : [],
    rights: r,
  };
  if (typeof m.role === 'string') meeting.role = m.role as Meeting['role'];
  if (typeof m.owner === 'boolean') meeting.owner = m.owner;
  if (typeof m.is_owner === 'boolean') meeting.owner = m.is_owner;
  if (typeof m.has_passcode === 'boolean') meeting.has_passcode = m.has_passcode;
  if (typeof m.passcode === 'boolean') meeting.has_passcode = m.passcode;
  if (typeof m.locked === 'boolean') meeting.locked = m.locked;
  if (typeof m.link === 'string' && m.link !== '') meeting.link = m.link;
  return meeting;
}

// ---------- invitation, entering, lobby ----------

export async function loadInvitation(id: string): Promise<Invitation> {
  const { data } = await call(`/${seg(id)}/invitation`);
  if (!isRecord(data)) throw new MeetingError('The server sent an unexpected answer.', 200);
  const owner = isRecord(data.owner) ? data.owner : {};
  const str = (...vs: unknown[]) => vs.find((v): v is string => typeof v === 'string' && v !== '') ?? null;
  return {
    id,
    title: str(data.title) ?? '',
    owner_name: str(data.owner_name, owner.name, owner.display_name) ?? '',
    owner_domain: str(data.owner_domain, owner.domain, owner.verified),
    starts_at: typeof data.starts_at === 'number' ? data.starts_at : null,
    ends_at: typeof data.ends_at === 'number' ? data.ends_at : null,
    passcode: data.passcode === true || data.needs_passcode === true || data.has_passcode === true,
    guests: data.guests === true,
    signed_in: data.signed_in === true,
    locked: data.locked === true,
    service: str(data.service),
  };
}

function admissionFrom(data: Record<string, unknown>): Admission | null {
  if (typeof data.token !== 'string' || data.token === '') return null;
  const a: Admission = { token: data.token };
  if (typeof data.identity === 'string') a.identity = data.identity;
  if (typeof data.name === 'string') a.name = data.name;
  return a;
}

export async function enterMeeting(id: string, request: { name?: string; passcode?: string }): Promise<EnterResult> {
  const { data } = await call(`/${seg(id)}/enter`, { body: request });
  if (!isRecord(data)) throw new MeetingError('The server sent an unexpected answer.', 200);
  const admission = admissionFrom(data);
  if (admission) return { admitted: admission };
  if (typeof data.ticket === 'string') return { ticket: data.ticket, state: lobbyStateName(data.state) };
  throw new MeetingError('The server sent an unexpected answer.', 200);
}

function lobbyStateName(v: unknown): LobbyStateName {
  return v === 'admitted' || v === 'denied' || v === 'ended' || v === 'locked' || v === 'left' ? v : 'waiting';
}

/** The waiting person's state; with `wait`, the server answers when it changes (or after about 20 s). */
export async function lobbyState(id: string, ticket: string, wait: boolean, signal?: AbortSignal): Promise<LobbyState> {
  const options: CallOptions = {};
  if (signal) options.signal = signal;
  const { data } = await call(`/${seg(id)}/lobby/${seg(ticket)}${wait ? '?wait=1' : ''}`, options);
  if (!isRecord(data)) throw new MeetingError('The server sent an unexpected answer.', 200);
  const state: LobbyState = { state: lobbyStateName(data.state) };
  const admission = admissionFrom(data);
  if (admission) {
    state.token = admission.token;
    if (admission.identity) state.identity = admission.identity;
    if (data.state === undefined) state.state = 'admitted';
  }
  return state;
}

export async function leaveLobby(id: string, ticket: string): Promise<void> {
  await call(`/${seg(id)}/lobby/${seg(ticket)}/leave`, { body: {} });
}

// ---------- inside the meeting (Bearer token) ----------

export async function meetingState(id: string, token: string): Promise<MeetingState> {
  const { data } = await call(`/${seg(id)}/state`, { bearer: token });
  if (!isRecord(data)) throw new MeetingError('The server sent an unexpected answer.', 200);
  return normaliseState(data);
}

export function normaliseState(data: Record<string, unknown>): MeetingState {
  const own = isRecord(data.rights) ? data.rights : {};
  const rights = {} as Record<RightName, boolean>;
  for (const name of RIGHT_NAMES) rights[name] = own[name] === true;
  const meetingRightsRaw = isRecord(data.meeting_rights) ? data.meeting_rights : isRecord(data.meeting) && isRecord(data.meeting.rights) ? data.meeting.rights : {};
  const meetingRights = { ...DEFAULT_RIGHTS };
  for (const name of RIGHT_NAMES) if (meetingRightsRaw[name] === 'everyone' || meetingRightsRaw[name] === 'hosts') meetingRights[name] = meetingRightsRaw[name] as Right;
  const role = typeof data.role === 'string' && data.role in ROLE_LABELS ? (data.role as Role) : 'participant';
  const state: MeetingState = {
    role,
    rights,
    meeting_rights: meetingRights,
    locked: data.locked === true,
    lobby: waitingList(data.lobby),
    files: Array.isArray(data.files) ? data.files.map(fileInfo).filter((f): f is SharedFileInfo => f !== null) : [],
  };
  if (typeof data.title === 'string') state.title = data.title;
  return state;
}

export function waitingList(v: unknown): WaitingPerson[] {
  const list = Array.isArray(v) ? v : isRecord(v) && Array.isArray(v.waiting) ? v.waiting : [];
  return list.filter(isRecord).filter((w) => typeof w.ticket === 'string').map((w) => ({
    ticket: String(w.ticket),
    name: typeof w.name === 'string' ? w.name : '',
    guest: w.guest === true,
    verified: typeof w.verified === 'string' && w.verified !== '' ? w.verified : null,
    invited: typeof w.invited === 'boolean' ? w.invited : null,
    since: typeof w.since === 'number' ? w.since : 0,
  }));
}

export function fileInfo(v: unknown): SharedFileInfo | null {
  if (!isRecord(v) || typeof v.id !== 'string' || typeof v.name !== 'string') return null;
  return {
    id: v.id,
    name: v.name,
    size: typeof v.size === 'number' ? v.size : 0,
    type: typeof v.type === 'string' ? v.type : '',
    from: typeof v.from === 'string' ? v.from : '',
  };
}

export type ModerationAction =
  | { action: 'mute' | 'stop_camera' | 'stop_screen_share' | 'lower_hand' | 'remove' | 'ban' }
  | { action: 'ask_unmute'; source: 'microphone' | 'camera' }
  | { action: 'set_role'; role: 'cohost' | 'participant' }
  | { action: 'grant'; rights: Partial<Record<RightName, boolean>> };

export const inMeeting = {
  admit: (id: string, token: string, who: { ticket: string } | { all: true }) => call(`/${seg(id)}/lobby/admit`, { bearer: token, body: who }),
  deny: (id: string, token: string, who: { ticket: string } | { all: true }) => call(`/${seg(id)}/lobby/deny`, { bearer: token, body: who }),
  lock: (id: string, token: string, locked: boolean) => call(`/${seg(id)}/lock`, { bearer: token, body: { locked } }),
  rights: (id: string, token: string, rights: Rights) => call(`/${seg(id)}/rights`, { bearer: token, body: { rights } }),
  moderate: (id: string, token: string, identity: string, action: ModerationAction) => call(`/${seg(id)}/moderate`, { bearer: token, body: { identity, ...action } }),
  hand: (id: string, token: string, raised: boolean) => call(`/${seg(id)}/hand`, { bearer: token, body: { raised } }),
  end: (id: string, token: string) => call(`/${seg(id)}/end`, { bearer: token, body: {} }),
  upload: (id: string, token: string, file: File) =>
    call(`/${seg(id)}/files`, {
      bearer: token,
      raw: { data: file, headers: { 'Content-Type': file.type || 'application/octet-stream', 'X-File-Name': headerSafeName(file.name) } },
    }),
};

/** The server reads X-File-Name percent-encoded (header values must be ASCII). */
function headerSafeName(name: string): string {
  return encodeURIComponent(name);
}

/** Downloads a shared file with the participant's token and hands it to the browser as an attachment. */
export async function downloadFile(id: string, token: string, file: { id: string; name: string }): Promise<void> {
  let response: Response;
  try {
    response = await fetch(`/api/meetings/${seg(id)}/files/${seg(file.id)}`, { headers: { Authorization: `Bearer ${token}` }, credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new MeetingError('The server could not be reached.', 0);
  }
  if (!response.ok) {
    let message = `The file could not be downloaded (HTTP ${response.status}).`;
    try {
      const data: unknown = await response.json();
      if (isRecord(data) && typeof data.error === 'string') message = data.error;
    } catch {
      // keep the generic message
    }
    throw new MeetingError(message, response.status);
  }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = file.name;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The address of a meeting's invitation page, with an end-to-end key when there is one. */
export function meetingLink(id: string, e2eeKey?: string): string {
  const base = `${window.location.origin}/m/${encodeURIComponent(id)}`;
  return e2eeKey ? `${base}#key=${encodeURIComponent(e2eeKey)}` : base;
}
