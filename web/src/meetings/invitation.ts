// /m/<id>: the invitation page (what the meeting is, who invited, and on
// which service), entering as the signed-in user or as a guest, and the
// lobby where the person waits for a host.

import { me, setReturnPath } from '../account/api';
import { readToken, type Session } from '../api';
import { h, showScreen } from '../ui';
import { validateName } from '../validate';
import { enterMeeting, leaveLobby, loadInvitation, lobbyState, MeetingError, type Admission, type Invitation, type LobbyStateName } from './api';

export interface InvitationOptions {
  id: string;
  /** Called with a session for the room once the person is admitted. */
  onAdmitted: (session: Session) => void;
  /** A message to show above the page, e.g. why the last attempt ended. */
  message?: string;
}

/** The meeting id from a path `/m/<id>`, or null. */
export function meetingIdFromPath(path: string): string | null {
  const m = /^\/m\/([A-Za-z0-9_-]{1,64})\/?$/.exec(path);
  return m ? m[1]! : null;
}

function page(title: string, testId: string, ...body: Array<Node | null>): HTMLElement {
  return h(
    'section',
    { class: 'screen screen-landing', 'aria-labelledby': 'invite-title', 'data-testid': testId },
    h(
      'div',
      { class: 'card' },
      h('header', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), h('a', { class: 'brand-name', href: '/', text: 'Conclave' })),
      h('h1', { id: 'invite-title', text: title }),
      ...body,
    ),
  );
}

/**
 * Where this page comes from, shown prominently against imitations (DIN
 * SPEC 27008, 4.3.7). `service` is the address the server is configured
 * with; a page reached under another address says so.
 */
function serviceBox(service?: string | null): HTMLElement {
  let configured: string | null = null;
  try {
    configured = service ? new URL(service.includes('://') ? service : `http://${service}`).host || null : null;
  } catch {
    configured = null;
  }
  const mismatch = configured !== null && configured !== window.location.host;
  return h(
    'div',
    { class: 'service-box', 'data-testid': 'service-address' },
    h('span', { class: 'service-label', text: 'This meeting service is' }),
    h('strong', { class: 'service-host', 'data-testid': 'service-host', text: window.location.host }),
    h('span', { class: 'field-hint', text: 'Enter only if this is the address of your organisation’s meeting service.' }),
    mismatch ? h('span', { class: 'form-error', 'data-testid': 'service-mismatch', text: `This server’s own address is ${configured}, not the one in your address bar. Be careful.` }) : null,
  );
}

function signInButton(id: string): HTMLElement {
  const path = `/m/${id}`;
  const a = h('a', { class: 'button button-primary', href: `/account/sign-in?next=${encodeURIComponent(path)}`, 'data-testid': 'invite-signin' }, 'Sign in');
  a.addEventListener('click', () => setReturnPath(path));
  return a;
}

export async function showInvitation(options: InvitationOptions): Promise<void> {
  const { id } = options;
  showScreen(page('Meeting invitation', 'invite-loading', h('p', { class: 'lead', role: 'status', text: 'Loading…' })));
  let account: Awaited<ReturnType<typeof me>> = null;
  try {
    account = await me();
  } catch {
    account = null;
  }
  const signedIn = account !== null && account.level === 'full';
  let invitation: Invitation;
  try {
    invitation = await loadInvitation(id);
  } catch (err) {
    if (err instanceof MeetingError && err.status === 404) {
      const lead = signedIn
        ? 'There is no such meeting, or you are not invited to it. Ask the person who invited you to check the invitation.'
        : 'This meeting is private, or it does not exist. Sign in with the account you were invited with.';
      showScreen(page('Private meeting', 'invite-private', h('p', { class: 'lead', 'data-testid': 'invite-private-text', text: lead }), serviceBox(), signedIn ? null : h('div', { class: 'actions' }, signInButton(id))));
      return;
    }
    const text = err instanceof MeetingError && err.status === 429 ? `Too many attempts. Try again in ${Math.ceil((err.retryAfter ?? 60) / 60)} minutes.` : err instanceof Error ? err.message : 'Something went wrong.';
    showScreen(page('Meeting invitation', 'invite-error', h('p', { class: 'form-error', role: 'alert', text })));
    return;
  }

  const when = invitation.starts_at
    ? new Date(invitation.starts_at * 1000).toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'short' }) +
      (invitation.ends_at ? ` – ${new Date(invitation.ends_at * 1000).toLocaleTimeString(undefined, { timeStyle: 'short' })}` : '')
    : null;
  const details = h(
    'dl',
    { class: 'invite-details' },
    h('dt', { text: 'Invited by' }),
    h(
      'dd',
      { 'data-testid': 'invite-owner' },
      h('span', { text: invitation.owner_name || 'unknown' }),
      invitation.owner_domain ? h('span', { class: 'verified', 'data-testid': 'invite-owner-domain', text: ` · verified: ${invitation.owner_domain}` }) : null,
    ),
    when ? h('dt', { text: 'When' }) : null,
    when ? h('dd', { 'data-testid': 'invite-when', text: when }) : null,
  );

  const error = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'enter-error' });
  if (options.message) {
    error.textContent = options.message;
    error.hidden = false;
  }
  const fields: HTMLElement[] = [];
  let nameInput: HTMLInputElement | null = null;
  let passInput: HTMLInputElement | null = null;
  const asGuest = !signedIn && invitation.guests;
  if (asGuest) {
    nameInput = h('input', { id: 'guest-name', type: 'text', autocomplete: 'name', maxlength: 64, required: true, 'data-testid': 'guest-name' });
    fields.push(h('div', { class: 'field' }, h('label', { for: 'guest-name', text: 'Your name' }), h('p', { class: 'field-hint', id: 'guest-hint', text: 'Others see it with “(guest)” after it.' }), nameInput));
    nameInput.setAttribute('aria-describedby', 'guest-hint');
  }
  if (invitation.passcode) {
    passInput = h('input', { id: 'meeting-passcode', type: 'password', autocomplete: 'off', maxlength: 64, 'data-testid': 'enter-passcode' });
    fields.push(h('div', { class: 'field' }, h('label', { for: 'meeting-passcode', text: 'Meeting passcode' }), passInput));
  }

  let form: HTMLFormElement | null = null;
  if (signedIn || asGuest) {
    const submit = h('button', { type: 'submit', class: 'button button-primary', 'data-testid': 'enter-button' }, signedIn ? `Enter as ${account!.account.display_name}` : 'Ask to enter as a guest');
    form = h('form', { class: 'card-form', novalidate: true, 'aria-label': 'Enter the meeting' }, ...fields, error, h('div', { class: 'actions' }, asGuest ? signInButton(id) : null, submit));
    if (asGuest) form.querySelector('[data-testid="invite-signin"]')?.classList.replace('button-primary', 'button-secondary');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      error.hidden = true;
      const request: { name?: string; passcode?: string } = {};
      if (nameInput) {
        const problem = validateName(nameInput.value);
        if (problem) {
          error.textContent = problem;
          error.hidden = false;
          nameInput.setAttribute('aria-invalid', 'true');
          nameInput.focus();
          return;
        }
        request.name = nameInput.value.trim();
      }
      if (passInput && passInput.value !== '') request.passcode = passInput.value;
      submit.disabled = true;
      form!.setAttribute('aria-busy', 'true');
      enterMeeting(id, request)
        .then((result) => {
          const name = request.name ?? account?.account.display_name ?? '';
          if ('admitted' in result) options.onAdmitted(sessionFor(id, result.admitted, name, invitation.title));
          else showLobby(options, invitation, result.ticket, name);
        })
        .catch((err: unknown) => {
          error.textContent = enterErrorText(err);
          error.hidden = false;
          submit.disabled = false;
          form!.removeAttribute('aria-busy');
        });
    });
  }

  const screen = page(
    invitation.title || 'Meeting',
    'invite-page',
    h('p', { class: 'lead', text: 'You are invited to this meeting.' }),
    details,
    invitation.locked ? h('p', { class: 'form-error', 'data-testid': 'invite-locked', text: 'The meeting is locked: nobody new can enter now.' }) : null,
    serviceBox(invitation.service),
    form ?? h('div', {}, error, h('p', { text: 'Sign in with the account you were invited with to enter.' }), h('div', { class: 'actions' }, signInButton(id))),
  );
  showScreen(screen, nameInput ?? passInput ?? screen.querySelector<HTMLElement>('[data-testid="enter-button"]'));
}

function enterErrorText(err: unknown): string {
  if (err instanceof MeetingError) {
    if (err.status === 429) return `Too many attempts. Try again in ${Math.ceil((err.retryAfter ?? 60) / 60)} minutes.`;
    return err.message;
  }
  return err instanceof Error ? err.message : 'Something went wrong. Please try again.';
}

function sessionFor(id: string, admission: Admission, name: string, title: string): Session {
  const info = readToken(admission.token);
  const session: Session = { token: admission.token, room: info?.room ?? id, name: info?.name ?? admission.name ?? name, source: 'meeting', meetingId: id };
  if (title) session.title = title;
  const identity = admission.identity ?? info?.identity;
  if (identity) session.identity = identity;
  return session;
}

const STATE_TEXT: Record<LobbyStateName, string> = {
  waiting: 'You are in the lobby. A host will let you in.',
  admitted: 'A host let you in.',
  denied: 'A host did not let you in.',
  ended: 'The meeting has ended.',
  locked: 'The meeting was locked. Nobody new can enter now.',
  left: 'You stopped waiting.',
};

const sleep = (ms: number) => new Promise((resolve) => window.setTimeout(resolve, ms));

function showLobby(options: InvitationOptions, invitation: Invitation, ticket: string, name: string): void {
  const { id } = options;
  const controller = new AbortController();
  let stopped = false;
  const state = h('p', { class: 'lobby-state', role: 'status', 'aria-live': 'polite', 'data-testid': 'lobby-state', 'data-state': 'waiting', text: STATE_TEXT.waiting });
  const spinner = h('span', { class: 'lobby-pulse', 'aria-hidden': 'true' });
  const stop = h('button', { type: 'button', class: 'button button-secondary', 'data-testid': 'lobby-leave' }, 'Stop waiting');
  const back = h('button', { type: 'button', class: 'button button-primary', hidden: true, 'data-testid': 'lobby-back' }, 'Back to the invitation');
  const actions = h('div', { class: 'actions' }, stop, back);

  const finish = (s: LobbyStateName) => {
    stopped = true;
    controller.abort();
    window.removeEventListener('pagehide', onHide);
    state.dataset.state = s;
    state.textContent = STATE_TEXT[s];
    spinner.hidden = true;
    stop.hidden = true;
    back.hidden = false;
    back.focus();
  };
  const onHide = () => {
    if (!stopped) void leaveLobby(id, ticket).catch(() => undefined);
  };
  window.addEventListener('pagehide', onHide);

  stop.addEventListener('click', () => {
    stop.disabled = true;
    void leaveLobby(id, ticket)
      .catch(() => undefined)
      .finally(() => finish('left'));
  });
  back.addEventListener('click', () => void showInvitation({ id, onAdmitted: options.onAdmitted }));

  const screen = page(
    'Waiting to be let in',
    'lobby-screen',
    h('p', { class: 'lead' }, h('strong', { text: invitation.title || 'Meeting' }), ` · as ${name}`),
    h('div', { class: 'lobby-status' }, spinner, state),
    serviceBox(),
    actions,
  );
  showScreen(screen, state);

  void (async () => {
    let failures = 0;
    while (!stopped) {
      try {
        const s = await lobbyState(id, ticket, true, controller.signal);
        failures = 0;
        if (stopped) return;
        if (s.state === 'waiting') continue;
        if (s.state === 'admitted' && s.token) {
          stopped = true;
          window.removeEventListener('pagehide', onHide);
          state.dataset.state = 'admitted';
          state.textContent = STATE_TEXT.admitted;
          const admission: Admission = { token: s.token };
          if (s.identity) admission.identity = s.identity;
          options.onAdmitted(sessionFor(id, admission, name, invitation.title));
          return;
        }
        finish(s.state === 'admitted' ? 'ended' : s.state);
        return;
      } catch (err) {
        if (stopped) return;
        if (err instanceof MeetingError && (err.status === 404 || err.status === 410)) {
          finish('ended');
          return;
        }
        failures++;
        state.textContent = 'The connection to the server was interrupted. Still trying…';
        await sleep(Math.min(30_000, 1000 * 2 ** Math.min(failures, 5)));
        if (!stopped) state.textContent = STATE_TEXT.waiting;
      }
    }
  })();
}
