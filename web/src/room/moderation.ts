// A meeting's control plane in the room: the lobby for hosts and
// co-hosts, actions on participants, the meeting's lock and rights, the
// raised hand, and requests to unmute. Every action is a call to the
// meetings API with the participant's token; the server decides, and the
// room shows what it decided. Nothing here switches a microphone or camera
// on: a request to unmute is shown, and only the person can act on it.

import type { Participant, Room } from 'livekit-client';
import {
  inMeeting,
  meetingState,
  normaliseState,
  RIGHT_LABELS,
  RIGHT_NAMES,
  waitingList,
  type MeetingState,
  type ModerationAction,
  type Right,
  type RightName,
  type Rights,
  type Role,
  type WaitingPerson,
} from '../meetings/api';
import { chime } from '../sound';
import { h, notify } from '../ui';
import { handRaisedAt, isHostRole, isModeratorRole, roleOf } from './roster';

export const LOBBY_TOPIC = 'conclave.lobby';
export const ASK_TOPIC = 'conclave.ask';
export const MEETING_TOPIC = 'conclave.meeting';

export interface ModerationHooks {
  /** Role, rights or lock changed: controls and roster follow. */
  onChange: (state: MeetingState) => void;
  /** The person chose to unmute after a request (a click of theirs). */
  unmute: (source: 'microphone' | 'camera') => Promise<void>;
  displayName: (p: Participant) => string;
}

function parse(payload: Uint8Array): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(payload));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export class Moderation {
  state: MeetingState | null = null;
  readonly lobbySection = h('section', { class: 'panel-section lobby-panel', 'aria-labelledby': 'lobby-title', 'data-testid': 'lobby-panel', hidden: true });
  readonly meetingSection = h('section', { class: 'panel-section', 'aria-labelledby': 'meeting-title', 'data-testid': 'meeting-panel', hidden: true });
  readonly askArea = h('div', { class: 'ask-area', 'data-testid': 'ask-area' });
  private readonly lobbyTitle = h('h2', { id: 'lobby-title', text: 'Lobby' });
  private readonly lobbyList = h('ul', { class: 'lobby-list', 'data-testid': 'lobby-list' });
  private readonly lobbyEmpty = h('p', { class: 'field-hint', 'data-testid': 'lobby-empty', text: 'Nobody is waiting.' });
  private readonly lobbyAll = h('div', { class: 'actions lobby-all' });
  private readonly lockButton = h('button', { type: 'button', class: 'button button-secondary button-small', 'data-testid': 'meeting-lock' });
  private readonly rightSelects = new Map<RightName, HTMLSelectElement>();
  private waiting: WaitingPerson[] = [];
  private knownTickets = new Set<string>();
  private ended = false;

  constructor(
    private readonly room: Room,
    readonly meetingId: string,
    private readonly token: () => string,
    private readonly hooks: ModerationHooks,
  ) {
    this.buildLobby();
    this.buildMeetingSection();
    // A click elsewhere closes an open participant menu.
    const onClick = (event: MouseEvent) => {
      for (const box of document.querySelectorAll<HTMLElement>('.item-actions')) {
        if (event.target instanceof Node && box.contains(event.target)) continue;
        const menu = box.querySelector<HTMLElement>('.item-menu');
        if (menu && !menu.hidden) {
          menu.hidden = true;
          box.querySelector('.item-menu-button')?.setAttribute('aria-expanded', 'false');
        }
      }
    };
    document.addEventListener('click', onClick);
    room.once('disconnected', () => document.removeEventListener('click', onClick));
  }

  // ----- who am I ----------------------------------------------------------

  role(): Role | null {
    return roleOf(this.room.localParticipant) ?? this.state?.role ?? null;
  }

  isModerator(): boolean {
    return isModeratorRole(this.role());
  }

  isHost(): boolean {
    return isHostRole(this.role());
  }

  /** The files right (not part of LiveKit's permissions): from the meeting state. */
  mayShareFiles(): boolean {
    if (this.isHost()) return true;
    return this.state?.rights.files ?? false;
  }

  async refresh(): Promise<void> {
    try {
      this.state = await meetingState(this.meetingId, this.token());
    } catch {
      // The room still works; controls fall back to the token's permissions.
      return;
    }
    if (this.isModerator()) this.setWaiting(this.state.lobby);
    this.renderMeetingSection();
    this.renderVisibility();
    this.hooks.onChange(this.state);
  }

  /** Role or permissions changed from the room's side. */
  roleChanged(): void {
    this.renderVisibility();
    this.renderMeetingSection();
    void this.refresh();
  }

  // ----- packets from the server --------------------------------------------

  /** Handles a server packet (no sender) of one of this module's topics; returns whether it was one. */
  receive(topic: string | undefined, payload: Uint8Array, from: Participant | undefined): boolean {
    if (topic !== LOBBY_TOPIC && topic !== ASK_TOPIC && topic !== MEETING_TOPIC) return false;
    // Only the server speaks on these topics; a participant's packet is ignored.
    if (from) return true;
    const data = parse(payload);
    if (!data) return true;
    if (topic === LOBBY_TOPIC) {
      if (this.isModerator()) this.setWaiting(waitingList(data.waiting));
    } else if (topic === ASK_TOPIC) {
      const source = data.source === 'camera' ? 'camera' : data.source === 'microphone' ? 'microphone' : null;
      if (source) this.showAsk(source, typeof data.from === 'string' && data.from !== '' ? data.from : 'A host');
    } else {
      this.meetingChanged(data);
    }
    return true;
  }

  private meetingChanged(data: Record<string, unknown>): void {
    if (data.ended === true && !this.ended) {
      this.ended = true;
      notify('The meeting was ended for everyone.', 'warning');
      return;
    }
    if (this.state) {
      if (typeof data.locked === 'boolean' && data.locked !== this.state.locked) {
        this.state.locked = data.locked;
        notify(data.locked ? 'The meeting is locked: nobody new can enter.' : 'The meeting is unlocked.');
      }
      if (typeof data.rights === 'object' && data.rights !== null) {
        const merged = normaliseState({ role: this.state.role, meeting_rights: data.rights }).meeting_rights;
        this.state.meeting_rights = merged;
      }
      this.renderMeetingSection();
    }
    // Own rights follow from the new meeting rights: ask the server.
    void this.refresh();
  }

  // ----- lobby ---------------------------------------------------------------

  private buildLobby(): void {
    const admitAll = h('button', { type: 'button', class: 'button button-primary button-small', 'data-testid': 'lobby-admit-all' }, 'Admit all');
    const denyAll = h('button', { type: 'button', class: 'button button-secondary button-small', 'data-testid': 'lobby-deny-all' }, 'Deny all');
    admitAll.addEventListener('click', () => void this.act(() => inMeeting.admit(this.meetingId, this.token(), { all: true }), 'Could not admit.'));
    denyAll.addEventListener('click', () => void this.act(() => inMeeting.deny(this.meetingId, this.token(), { all: true }), 'Could not deny.'));
    this.lobbyAll.append(denyAll, admitAll);
    this.lobbySection.append(this.lobbyTitle, this.lobbyEmpty, this.lobbyList, this.lobbyAll);
  }

  private setWaiting(list: WaitingPerson[]): void {
    const fresh = list.filter((w) => !this.knownTickets.has(w.ticket));
    this.waiting = list;
    this.knownTickets = new Set(list.map((w) => w.ticket));
    this.renderLobby();
    if (fresh.length > 0) {
      chime('lobby');
      const names = fresh.map((w) => w.name || 'Someone');
      notify(names.length === 1 ? `${names[0]} is waiting in the lobby` : `${names.length} people are waiting in the lobby`, 'warning');
    }
  }

  private renderLobby(): void {
    const n = this.waiting.length;
    this.lobbyTitle.textContent = n ? `Lobby (${n} waiting)` : 'Lobby';
    this.lobbyEmpty.hidden = n > 0;
    this.lobbyAll.hidden = n < 2;
    this.lobbyList.replaceChildren(
      ...this.waiting.map((w) => {
        const admit = h('button', { type: 'button', class: 'button button-primary button-small', 'data-testid': 'lobby-admit', 'aria-label': `Admit ${w.name}` }, 'Admit');
        const deny = h('button', { type: 'button', class: 'button button-secondary button-small', 'data-testid': 'lobby-deny', 'aria-label': `Deny ${w.name}` }, 'Deny');
        admit.addEventListener('click', () => void this.act(() => inMeeting.admit(this.meetingId, this.token(), { ticket: w.ticket }), 'Could not admit.'));
        deny.addEventListener('click', () => void this.act(() => inMeeting.deny(this.meetingId, this.token(), { ticket: w.ticket }), 'Could not deny.'));
        const who = [w.guest ? 'guest, no account' : w.verified ? `verified: ${w.verified}` : 'account', w.invited === false ? 'not invited, has the link' : w.invited ? 'invited' : ''].filter(Boolean).join(' · ');
        return h(
          'li',
          { class: 'lobby-item', 'data-testid': 'lobby-item', 'data-name': w.name, 'data-ticket': w.ticket },
          h('span', { class: 'lobby-who' }, h('strong', { text: w.name }), h('span', { class: w.guest ? 'tag tag-guest' : 'field-hint', text: ` ${who}` })),
          h('span', { class: 'lobby-actions' }, deny, admit),
        );
      }),
    );
  }

  // ----- the meeting (hosts) -------------------------------------------------

  private buildMeetingSection(): void {
    this.lockButton.addEventListener('click', () => {
      const locked = !(this.state?.locked ?? false);
      void this.act(async () => {
        await inMeeting.lock(this.meetingId, this.token(), locked);
        if (this.state) this.state.locked = locked;
        this.renderMeetingSection();
      }, 'Could not change the lock.');
    });
    const rights = h('div', { class: 'rights-grid' });
    for (const name of RIGHT_NAMES) {
      const id = `room-right-${name}`;
      const select = h('select', { id, 'data-testid': `room-right-${name}` }, h('option', { value: 'everyone', text: 'Everyone' }), h('option', { value: 'hosts', text: 'Hosts only' }));
      select.addEventListener('change', () => {
        const next: Rights = { ...(this.state?.meeting_rights ?? ({} as Rights)) };
        for (const [n, s] of this.rightSelects) next[n] = s.value as Right;
        void this.act(async () => {
          await inMeeting.rights(this.meetingId, this.token(), next);
          if (this.state) this.state.meeting_rights = next;
        }, 'Could not change the rights.');
      });
      this.rightSelects.set(name, select);
      rights.append(h('div', { class: 'field' }, h('label', { for: id, text: RIGHT_LABELS[name] }), select));
    }
    const end = h('button', { type: 'button', class: 'button button-danger button-small', 'data-testid': 'meeting-end' }, 'End for everyone');
    end.addEventListener('click', () => {
      const confirm = h('button', { type: 'button', class: 'button button-danger button-small', 'data-testid': 'meeting-end-confirm' }, 'End the meeting now');
      const cancel = h('button', { type: 'button', class: 'button button-secondary button-small' }, 'Cancel');
      const box = h('div', { class: 'confirm-box', role: 'group', 'aria-label': 'End the meeting for everyone?' }, h('p', { text: 'Everyone leaves and shared files are deleted.' }), h('div', { class: 'actions' }, cancel, confirm));
      cancel.addEventListener('click', () => {
        box.replaceWith(end);
        end.focus();
      });
      confirm.addEventListener('click', () => void this.act(() => inMeeting.end(this.meetingId, this.token()), 'Could not end the meeting.'));
      end.replaceWith(box);
      cancel.focus();
    });
    this.meetingSection.append(
      h('h2', { id: 'meeting-title', text: 'Meeting' }),
      h('div', { class: 'actions actions-start' }, this.lockButton),
      h('fieldset', { class: 'fieldset' }, h('legend', { text: 'Who may use' }), rights),
      h('div', { class: 'actions actions-start' }, end),
    );
  }

  private renderMeetingSection(): void {
    const locked = this.state?.locked ?? false;
    this.lockButton.textContent = locked ? 'Unlock the meeting' : 'Lock the meeting';
    this.lockButton.setAttribute('aria-pressed', String(locked));
    this.lockButton.dataset.locked = String(locked);
    if (this.state) {
      for (const [name, select] of this.rightSelects) select.value = this.state.meeting_rights[name];
    }
  }

  private renderVisibility(): void {
    this.lobbySection.hidden = !this.isModerator();
    this.meetingSection.hidden = !this.isHost();
  }

  // ----- participants --------------------------------------------------------

  /** The moderation menu of a remote participant's roster entry, or null for those who may not moderate. */
  actionsFor(p: Participant): HTMLElement | null {
    if (!this.isModerator() || p === this.room.localParticipant) return null;
    const name = this.hooks.displayName(p);
    const menuId = `actions-${p.sid || p.identity}`.replace(/[^A-Za-z0-9_-]/g, '_');
    const toggle = h('button', { type: 'button', class: 'item-menu-button', 'aria-expanded': 'false', 'aria-controls': menuId, 'aria-label': `Actions for ${name}`, 'data-testid': 'participant-actions' }, '⋯');
    const menu = h('div', { id: menuId, class: 'item-menu', role: 'group', 'aria-label': `Actions for ${name}`, hidden: true });
    const close = () => {
      menu.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
    };
    toggle.addEventListener('click', () => {
      if (!menu.hidden) {
        close();
        return;
      }
      menu.replaceChildren(...this.menuButtons(p, name, close));
      menu.hidden = false;
      toggle.setAttribute('aria-expanded', 'true');
      menu.querySelector<HTMLButtonElement>('button')?.focus();
    });
    menu.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        close();
        toggle.focus();
      }
    });
    return h('span', { class: 'item-actions' }, toggle, menu);
  }

  private menuButtons(p: Participant, name: string, close: () => void): HTMLButtonElement[] {
    const out: HTMLButtonElement[] = [];
    const add = (text: string, testId: string, action: ModerationAction, done: string) => {
      const b = h('button', { type: 'button', class: 'item-menu-item', 'data-testid': testId }, text);
      b.addEventListener('click', () => {
        close();
        void this.act(async () => {
          await inMeeting.moderate(this.meetingId, this.token(), p.identity, action);
          notify(done, 'success');
        }, 'That did not work.');
      });
      out.push(b);
    };
    const host = this.isHost();
    const role = roleOf(p);
    if (p.isMicrophoneEnabled) add('Mute microphone', 'action-mute', { action: 'mute' }, `${name}'s microphone is muted.`);
    else add('Ask to unmute', 'action-ask-unmute', { action: 'ask_unmute', source: 'microphone' }, `${name} was asked to unmute.`);
    if (p.isCameraEnabled) add('Stop camera', 'action-stop-camera', { action: 'stop_camera' }, `${name}'s camera is stopped.`);
    else add('Ask to start the camera', 'action-ask-camera', { action: 'ask_unmute', source: 'camera' }, `${name} was asked to start the camera.`);
    if (p.isScreenShareEnabled) add('Stop screen sharing', 'action-stop-screen', { action: 'stop_screen_share' }, `${name}'s screen sharing is stopped.`);
    if (handRaisedAt(p) !== null) add('Lower hand', 'action-lower-hand', { action: 'lower_hand' }, `${name}'s hand is lowered.`);
    if (host && !isHostRole(role)) {
      if (role === 'cohost') add('Make participant', 'action-demote', { action: 'set_role', role: 'participant' }, `${name} is a participant now.`);
      else add('Make co-host', 'action-make-cohost', { action: 'set_role', role: 'cohost' }, `${name} is a co-host now.`);
      add('Allow screen sharing', 'action-grant-screen', { action: 'grant', rights: { screen_share: true } }, `${name} may share the screen.`);
    }
    if (!isHostRole(role)) {
      add('Remove from the meeting', 'action-remove', { action: 'remove' }, `${name} was removed.`);
      if (host) add('Ban from the meeting', 'action-ban', { action: 'ban' }, `${name} was removed and cannot enter again.`);
    }
    return out;
  }

  // ----- own hand ------------------------------------------------------------

  async setHand(raised: boolean): Promise<void> {
    await this.act(() => inMeeting.hand(this.meetingId, this.token(), raised), 'Could not change your hand.');
  }

  // ----- asked to unmute -------------------------------------------------------

  private showAsk(source: 'microphone' | 'camera', from: string): void {
    this.askArea.querySelector(`[data-source="${source}"]`)?.remove();
    chime('ask');
    const what = source === 'microphone' ? 'unmute your microphone' : 'turn on your camera';
    const textId = `ask-text-${source}`;
    const yes = h('button', { type: 'button', class: 'button button-primary button-small', 'data-testid': 'ask-accept' }, source === 'microphone' ? 'Unmute' : 'Turn on camera');
    const no = h('button', { type: 'button', class: 'button button-secondary button-small', 'data-testid': 'ask-decline' }, 'Not now');
    const box = h(
      'div',
      { class: 'ask-prompt', role: 'alertdialog', 'aria-labelledby': textId, 'data-testid': 'ask-prompt', 'data-source': source },
      h('p', { id: textId, 'data-testid': 'ask-text', text: `${from} asks you to ${what}.` }),
      h('div', { class: 'actions' }, no, yes),
    );
    yes.addEventListener('click', () => {
      box.remove();
      void this.hooks.unmute(source);
    });
    no.addEventListener('click', () => box.remove());
    this.askArea.append(box);
    notify(`${from} asks you to ${what}.`);
    no.focus();
  }

  // ----- helpers ---------------------------------------------------------------

  private async act(run: () => Promise<unknown>, fallback: string): Promise<void> {
    try {
      await run();
    } catch (err) {
      notify(err instanceof Error ? err.message : fallback, 'error');
    }
  }
}
