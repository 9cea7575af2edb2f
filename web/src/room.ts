// The meeting itself: connects with livekit-client, publishes the chosen
// tracks, and keeps the video grid, participant list and controls in step
// with the room's events.

import {
  ConnectionState,
  DisconnectReason,
  ExternalE2EEKeyProvider,
  isE2EESupported,
  type LocalTrackPublication,
  type Participant,
  type RemoteParticipant,
  type RemoteTrack,
  Room,
  RoomEvent,
  type RoomOptions,
  supportsAudioOutputSelection,
  Track,
} from 'livekit-client';
import { signallingUrl, type Session } from './api';
import { meetingLink } from './meetings/api';
import { listDevices, mediaErrorMessage, type DeviceChoice, type DeviceKind } from './media';
import type { JoinChoices } from './prejoin';
import { Chat, CHAT_TOPIC } from './room/chat';
import { FILE_TOPIC, Files } from './room/files';
import { Moderation } from './room/moderation';
import { handRaisedAt, labels, mayChat, mayPublish, verifiedDomain, type Source } from './room/roster';
import { chime } from './sound';
import { append, deviceSelect, h, icon, initials, notify, showScreen } from './ui';

export interface MeetingEnd {
  reason?: DisconnectReason;
  /** Human-readable explanation when the meeting did not end by leaving. */
  detail?: string;
  micOn: boolean;
  cameraOn: boolean;
  devices: DeviceChoice;
}

/** Upper bound for joining, on top of livekit-client's own timeouts. */
const CONNECT_TIMEOUT_MS = 45_000;

/** Address of livekit-client's end-to-end encryption worker, set by build.mjs. */
declare const __E2EE_WORKER__: string;

interface ParticipantView {
  tile: HTMLElement;
  video: HTMLVideoElement;
  avatar: HTMLElement;
  label: HTMLElement;
  micBadge: HTMLElement;
  item: HTMLElement;
  itemName: HTMLElement;
  itemLabels: HTMLElement;
  itemState: HTMLElement;
  tileLabels: HTMLElement;
  handBadge: HTMLElement;
  actionsSlot: HTMLElement;
  /** Whether the moderation menu was built (for moderators only). */
  moderated: boolean;
  attached?: Track;
}

/** A participant's shared screen: a tile of its own, wider than the faces. */
interface ScreenView {
  tile: HTMLElement;
  video: HTMLVideoElement;
  label: HTMLElement;
  attached?: Track;
}

/**
 * Connects to the room. Resolves once connected and the meeting screen is
 * shown; rejects with a readable error if the connection fails (nothing is
 * shown then, and the caller keeps ownership of the tracks).
 */
export async function enterRoom(session: Session, choices: JoinChoices, onEnd: (end: MeetingEnd) => void): Promise<void> {
  const options: RoomOptions = { adaptiveStream: true, dynacast: true };
  let keyProvider: ExternalE2EEKeyProvider | undefined;
  if (session.e2eeKey) {
    if (!isE2EESupported()) throw new Error('This browser cannot take part in end-to-end encrypted meetings.');
    keyProvider = new ExternalE2EEKeyProvider();
    options.e2ee = { keyProvider, worker: new Worker(new URL(__E2EE_WORKER__, window.location.origin), { type: 'module' }) };
  }
  const room = new Room(options);
  let timer = 0;
  try {
    if (keyProvider && session.e2eeKey) {
      await keyProvider.setKey(session.e2eeKey);
      await room.setE2EEEnabled(true);
    }
    const timeout = new Promise<never>((_, reject) => {
      timer = window.setTimeout(() => reject(new Error('connection timed out')), CONNECT_TIMEOUT_MS);
    });
    await Promise.race([room.connect(signallingUrl(), session.token), timeout]);
  } catch (err) {
    await room.disconnect().catch(() => undefined);
    throw new Error(connectErrorMessage(err));
  } finally {
    window.clearTimeout(timer);
  }
  new Meeting(room, session, choices, onEnd).start();
}

class Meeting {
  private readonly views = new Map<string, ParticipantView>();
  private readonly screens = new Map<string, ScreenView>();
  private readonly grid = h('div', { class: 'grid', 'data-testid': 'video-grid' });
  private readonly list = h('ul', { class: 'participant-list', 'data-testid': 'participant-list' });
  private readonly listTitle = h('h2', { id: 'participants-title' });
  private readonly audioSink = h('div', { class: 'audio-sink', 'aria-hidden': 'true' });
  private readonly banner = h('div', { class: 'banner', role: 'status', hidden: true, 'data-testid': 'connection-banner' });
  private readonly statusText = h('span', { class: 'status-text', 'data-testid': 'connection-state' });
  private readonly e2eeBadge = h(
    'span',
    { class: 'e2ee-badge', 'data-testid': 'e2ee-state', title: 'Audio and video are encrypted on your device; the server cannot read them.' },
    'End-to-end encrypted',
  );
  private readonly micButton = h('button', { type: 'button', class: 'control', 'data-testid': 'mic-toggle' });
  private readonly camButton = h('button', { type: 'button', class: 'control', 'data-testid': 'camera-toggle' });
  private readonly screenButton = h('button', { type: 'button', class: 'control', 'data-testid': 'screen-share-toggle' });
  private readonly handButton = h('button', { type: 'button', class: 'control', 'data-testid': 'hand-toggle', hidden: true });
  /** Why a control is unavailable; the controls point to it with aria-describedby. */
  private readonly controlsHint = h('p', { id: 'controls-hint', class: 'controls-hint', 'data-testid': 'controls-hint', 'aria-live': 'polite', hidden: true });
  private readonly moderation?: Moderation;
  private readonly files?: Files;
  private readonly chat: Chat;
  private readonly panelButton = h('button', { type: 'button', class: 'control control-secondary', 'data-testid': 'participants-toggle', 'aria-controls': 'side-panel' });
  private readonly leaveButton = h('button', { type: 'button', class: 'control control-leave', 'data-testid': 'leave-button' }, icon('leave'), h('span', { text: 'Leave' }));
  private readonly audioButton = h('button', { type: 'button', class: 'button button-primary', hidden: true, 'data-testid': 'start-audio' }, icon('speaker'), ' Allow audio playback');
  private readonly panel = h('aside', { id: 'side-panel', class: 'side-panel', 'aria-labelledby': 'participants-title' });
  private readonly devices: DeviceChoice;
  private readonly cleanups: Array<() => void> = [];
  private resizeObserver?: ResizeObserver;
  private ended = false;
  private warnedDecryption = false;
  private busy = { mic: false, cam: false, screen: false };
  /** Last known state of the local devices, offered again on rejoin. */
  private wanted: { mic: boolean; cam: boolean };

  constructor(
    private readonly room: Room,
    private readonly session: Session,
    private readonly choices: JoinChoices,
    private readonly onEnd: (end: MeetingEnd) => void,
  ) {
    this.devices = { ...choices.devices };
    this.wanted = { mic: !!choices.audio, cam: !!choices.video };
    this.chat = new Chat(room, (p) => this.displayName(p), (from, text) => {
      if (this.panel.hidden) notify(`${from}: ${text.length > 120 ? `${text.slice(0, 120)}…` : text}`);
    });
    if (session.meetingId) {
      const token = () => session.token;
      this.moderation = new Moderation(room, session.meetingId, token, {
        onChange: (state) => {
          this.files?.seed(state.files);
          this.afterRoleChange();
        },
        unmute: (source) => this.unmuteOnRequest(source),
        displayName: (p) => this.displayName(p),
      });
      this.files = new Files(session.meetingId, token);
    }
  }

  start(): void {
    this.subscribeToEvents();
    this.render();
    for (const p of this.everyone()) this.sync(p);
    for (const p of this.room.remoteParticipants.values()) this.attachAudioOf(p);
    this.updateControls();
    this.updateConnectionState(this.room.state);
    this.updateAudioPlayback();
    void this.moderation?.refresh();
    void this.applyDevices().then(() => this.publishChosenTracks());
  }

  private everyone(): Participant[] {
    return [this.room.localParticipant, ...this.room.remoteParticipants.values()];
  }

  private displayName(p: Participant): string {
    return p.name || p.identity;
  }

  // ----- setup -------------------------------------------------------------

  private async applyDevices(): Promise<void> {
    const kinds: DeviceKind[] = ['audioinput', 'videoinput'];
    if (supportsAudioOutputSelection()) kinds.push('audiooutput');
    for (const kind of kinds) {
      const id = this.devices[kind];
      if (id) await this.room.switchActiveDevice(kind, id).catch(() => false);
    }
  }

  private async publishChosenTracks(): Promise<void> {
    const { audio, video } = this.choices;
    const jobs: Array<Promise<unknown>> = [];
    const lp = this.room.localParticipant;
    // Sources the meeting does not allow are not offered (the server would refuse them).
    if (audio && !mayPublish(lp, 'microphone')) {
      audio.stop();
      this.wanted.mic = false;
    } else if (audio) jobs.push(lp.publishTrack(audio, { source: Track.Source.Microphone }));
    if (video && !mayPublish(lp, 'camera')) {
      video.stop();
      this.wanted.cam = false;
    } else if (video) jobs.push(lp.publishTrack(video, { source: Track.Source.Camera }));
    const results = await Promise.allSettled(jobs);
    if (results.some((r) => r.status === 'rejected') && !this.ended) {
      notify('Your camera or microphone could not be shared with the room.', 'error');
    }
    this.sync(this.room.localParticipant);
    this.updateControls();
  }

  private subscribeToEvents(): void {
    const room = this.room;
    room
      .on(RoomEvent.ParticipantConnected, (p) => {
        this.sync(p);
        chime('join');
        notify(`${this.displayName(p)} joined`);
      })
      .on(RoomEvent.ParticipantDisconnected, (p) => {
        this.remove(p);
        chime('leave');
        notify(`${this.displayName(p)} left`);
      })
      .on(RoomEvent.ParticipantAttributesChanged, (changed, p) => {
        if (p === this.room.localParticipant && 'conclave.role' in changed) {
          this.moderation?.roleChanged();
          this.afterRoleChange();
        }
        this.syncAndControls(p);
      })
      .on(RoomEvent.ParticipantPermissionsChanged, (_prev, p) => {
        if (p !== this.room.localParticipant) return;
        this.updateControls();
        void this.moderation?.refresh();
      })
      .on(RoomEvent.DataReceived, (payload, participant, _kind, topic) => {
        if (topic === CHAT_TOPIC) this.chat.receive(payload, participant);
        else if (topic === FILE_TOPIC) {
          if (!participant) this.files?.receive(payload);
        } else this.moderation?.receive(topic, payload, participant);
      })
      .on(RoomEvent.TrackSubscribed, (track, _pub, p) => {
        if (track.kind === Track.Kind.Audio) this.attachAudio(track);
        this.sync(p);
      })
      .on(RoomEvent.TrackUnsubscribed, (track, _pub, p) => {
        if (track.kind === Track.Kind.Audio) track.detach().forEach((el) => el.remove());
        this.sync(p);
      })
      .on(RoomEvent.TrackPublished, (_pub, p) => this.sync(p))
      .on(RoomEvent.TrackUnpublished, (_pub, p) => this.sync(p))
      .on(RoomEvent.TrackMuted, (_pub, p) => this.syncAndControls(p))
      .on(RoomEvent.TrackUnmuted, (_pub, p) => this.syncAndControls(p))
      .on(RoomEvent.LocalTrackPublished, (_pub: LocalTrackPublication, p) => this.syncAndControls(p))
      .on(RoomEvent.LocalTrackUnpublished, (_pub: LocalTrackPublication, p) => this.syncAndControls(p))
      .on(RoomEvent.ParticipantNameChanged, (_name, p) => this.sync(p))
      .on(RoomEvent.ActiveSpeakersChanged, (speakers) => this.showSpeakers(speakers))
      .on(RoomEvent.ConnectionStateChanged, (state) => this.updateConnectionState(state))
      .on(RoomEvent.Reconnected, () => notify('Connection restored', 'success'))
      .on(RoomEvent.AudioPlaybackStatusChanged, () => this.updateAudioPlayback())
      .on(RoomEvent.MediaDevicesError, (err, kind) => {
        notify(mediaErrorMessage(kind === 'videoinput' ? 'camera' : 'microphone', err), 'error');
      })
      .on(RoomEvent.MediaDevicesChanged, () => void this.refreshDeviceLists())
      .on(RoomEvent.Disconnected, (reason) => this.end(reason))
      .on(RoomEvent.ParticipantEncryptionStatusChanged, (enabled, p) => {
        if (p === this.room.localParticipant) this.e2eeBadge.hidden = !enabled;
      })
      .on(RoomEvent.EncryptionError, () => {
        if (this.warnedDecryption) return;
        this.warnedDecryption = true;
        // The notice goes away; the header keeps saying it.
        this.grid.closest('.screen')?.querySelector('.room-header')?.appendChild(
          h('span', { class: 'e2ee-badge e2ee-problem', role: 'status', 'data-testid': 'e2ee-problem', title: 'Someone in the meeting uses another key: their media cannot be shown.' }, 'Some media could not be decrypted'),
        );
        notify('Some media could not be decrypted. Everyone must join with the same meeting link.', 'error');
      });

    const onPageHide = () => void room.disconnect();
    window.addEventListener('pagehide', onPageHide);
    this.cleanups.push(() => window.removeEventListener('pagehide', onPageHide));
  }

  // ----- layout ------------------------------------------------------------

  private render(): void {
    const roomName = this.session.title || this.room.name || this.session.room;
    const title = h('h1', { class: 'room-title', id: 'room-title' }, h('span', { class: 'visually-hidden', text: 'Meeting room ' }), roomName);

    const header = h(
      'header',
      { class: 'room-header' },
      h('div', { class: 'room-heading' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), title),
      h('div', { class: 'room-status' }, h('span', { class: 'status-dot', 'aria-hidden': 'true' }), this.statusText),
    );

    // The encryption worker confirms after the connection is up, so the badge
    // follows its status event rather than the state at this moment.
    if (this.session.e2eeKey) {
      this.e2eeBadge.hidden = !this.room.isE2EEEnabled;
      header.appendChild(this.e2eeBadge);
    }

    if (this.session.meetingId) {
      const copy = h('button', { type: 'button', class: 'button button-secondary button-small', 'data-testid': 'copy-link' }, icon('link'), ' Copy meeting link');
      copy.addEventListener('click', () => void this.copyText(meetingLink(this.session.meetingId!, this.session.e2eeKey), 'Meeting link'));
      header.appendChild(copy);
    } else if (this.session.source === 'open') {
      const copy = h('button', { type: 'button', class: 'button button-secondary button-small', 'data-testid': 'copy-link' }, icon('link'), ' Copy room link');
      copy.addEventListener('click', () => void this.copyLink());
      header.appendChild(copy);
    }

    this.panel.replaceChildren(
      ...(this.moderation ? [this.moderation.lobbySection] : []),
      h('section', { class: 'panel-section', 'aria-labelledby': 'participants-title' }, this.listTitle, this.list),
      ...(this.moderation ? [this.moderation.meetingSection] : []),
      this.chat.section,
      ...(this.files ? [this.files.section] : []),
      this.deviceSettings(),
    );
    this.panelButton.addEventListener('click', () => this.setPanelOpen(this.panel.hidden !== false));
    const wide = window.matchMedia('(min-width: 900px)');
    this.setPanelOpen(wide.matches);

    this.micButton.addEventListener('click', () => void this.toggleMic());
    this.camButton.addEventListener('click', () => void this.toggleCamera());
    this.screenButton.addEventListener('click', () => void this.toggleScreenShare());
    this.handButton.hidden = !this.moderation;
    this.handButton.addEventListener('click', () => {
      const raised = handRaisedAt(this.room.localParticipant) !== null;
      this.handButton.disabled = true;
      void this.moderation?.setHand(!raised).finally(() => {
        this.handButton.disabled = false;
      });
    });
    // Browsers without screen capture (most phones) get no button.
    this.screenButton.hidden = typeof navigator.mediaDevices?.getDisplayMedia !== 'function';
    this.leaveButton.addEventListener('click', () => {
      this.leaveButton.disabled = true;
      void this.room.disconnect();
    });
    this.audioButton.addEventListener('click', () => {
      void this.room.startAudio().then(() => this.updateAudioPlayback());
    });

    const controls = h(
      'div',
      { class: 'controls', role: 'group', 'aria-label': 'Meeting controls' },
      this.micButton,
      this.camButton,
      this.screenButton,
      this.handButton,
      this.panelButton,
      this.leaveButton,
    );

    const screen = h(
      'section',
      { class: 'screen screen-room', 'aria-labelledby': 'room-title' },
      header,
      this.banner,
      h('div', { class: 'audio-prompt' }, this.audioButton),
      h('div', { class: 'room-body' }, h('div', { class: 'stage', 'aria-label': 'Participants video' }, this.grid), this.panel),
      this.moderation ? this.moderation.askArea : null,
      this.controlsHint,
      controls,
      this.audioSink,
    );
    showScreen(screen, title);

    this.resizeObserver = new ResizeObserver(() => this.layoutGrid());
    this.resizeObserver.observe(this.grid);
    this.cleanups.push(() => this.resizeObserver?.disconnect());
  }

  private setPanelOpen(open: boolean): void {
    this.panel.hidden = !open;
    this.panelButton.setAttribute('aria-expanded', String(open));
    this.panelButton.classList.toggle('control-active', open);
  }

  /** Chooses the column count that gives the largest 16:9 tiles. */
  private layoutGrid(): void {
    const n = Math.max(1, this.grid.children.length);
    const width = this.grid.clientWidth;
    const height = this.grid.clientHeight;
    if (width === 0 || height === 0) return;
    const gap = 8;
    let best = { cols: 1, size: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = (width - gap * (cols - 1)) / cols;
      const hgt = (height - gap * (rows - 1)) / rows;
      const size = Math.min(w, (hgt * 16) / 9);
      if (size > best.size) best = { cols, size };
    }
    this.grid.style.setProperty('--cols', String(best.cols));
    this.grid.style.setProperty('--tile-width', `${Math.floor(best.size)}px`);
  }

  // ----- participants ------------------------------------------------------

  private view(p: Participant): ParticipantView {
    const existing = this.views.get(p.identity);
    if (existing) return existing;
    const isLocal = p === this.room.localParticipant;
    const video = h('video', { class: isLocal ? 'tile-video mirrored' : 'tile-video', playsinline: true, autoplay: true, muted: true });
    video.muted = true;
    const avatar = h('div', { class: 'tile-avatar' }, h('span', { class: 'avatar' }));
    const micBadge = h('span', { class: 'mic-badge', hidden: true, title: 'Microphone off' }, icon('micOff'), h('span', { class: 'visually-hidden', text: 'Microphone off' }));
    const label = h('span', { class: 'tile-name' });
    const tileLabels = h('span', { class: 'tile-labels' });
    const handBadge = h('span', { class: 'hand-badge', hidden: true, 'data-testid': 'tile-hand', title: 'Hand raised' }, icon('hand'), h('span', { class: 'visually-hidden', text: 'Hand raised' }));
    const tile = h(
      'div',
      { class: 'tile', 'data-testid': 'video-tile', 'data-identity': p.identity, role: 'group' },
      video,
      avatar,
      h('div', { class: 'tile-footer' }, micBadge, handBadge, label, tileLabels),
    );
    const itemName = h('span', { class: 'item-name' });
    const itemLabels = h('span', { class: 'item-labels', 'data-testid': 'participant-labels' });
    const itemState = h('span', { class: 'item-state' });
    const actionsSlot = h('span', { class: 'item-actions-slot' });
    const item = h(
      'li',
      { class: 'participant-item', 'data-testid': 'participant-item', 'data-identity': p.identity },
      h('span', { class: 'avatar avatar-small', 'aria-hidden': 'true' }),
      h('span', { class: 'item-main' }, itemName, itemLabels),
      itemState,
      actionsSlot,
    );
    const view: ParticipantView = { tile, video, avatar, label, micBadge, item, itemName, itemLabels, itemState, tileLabels, handBadge, actionsSlot, moderated: false };
    this.views.set(p.identity, view);
    if (isLocal) {
      this.grid.prepend(tile);
      this.list.prepend(item);
    } else {
      this.grid.appendChild(tile);
      this.list.appendChild(item);
    }
    this.afterMembershipChange();
    return view;
  }

  private syncAndControls(p: Participant): void {
    this.sync(p);
    if (p === this.room.localParticipant) this.updateControls();
  }

  /** Brings one participant's tile and list entry up to date. */
  private sync(p: Participant): void {
    if (this.ended) return;
    const v = this.view(p);
    const isLocal = p === this.room.localParticipant;
    const name = this.displayName(p);
    const micOn = p.isMicrophoneEnabled;
    const camOn = p.isCameraEnabled;

    v.tile.setAttribute('aria-label', isLocal ? `${name} (you)` : name);
    v.label.textContent = isLocal ? `${name} (you)` : name;
    v.micBadge.hidden = micOn;
    v.avatar.firstElementChild!.textContent = initials(name);

    v.item.dataset.name = name;
    v.itemName.replaceChildren(name, isLocal ? h('span', { class: 'item-you', text: ' (you)' }) : '');
    const tags = labels(p);
    const domain = verifiedDomain(p);
    v.itemLabels.replaceChildren(
      ...tags.map((l) => h('span', { class: `tag tag-${l.kind}`, title: l.title, 'data-label': l.text, text: l.text })),
      domain ? h('span', { class: 'tag tag-verified', title: `Account verified at ${domain}`, text: domain }) : '',
    );
    v.tileLabels.replaceChildren(...tags.map((l) => h('span', { class: `tag tag-${l.kind}`, title: l.title, text: l.text })));
    v.item.dataset.labels = tags.map((l) => l.text).join(' ');
    const sharing = p.isScreenShareEnabled;
    const hand = handRaisedAt(p) !== null;
    v.handBadge.hidden = !hand;
    v.itemState.replaceChildren(
      hand ? h('span', { class: 'state state-hand', title: 'Hand raised', 'data-testid': 'item-hand' }, icon('hand'), h('span', { class: 'visually-hidden', text: 'hand raised' })) : '',
      h('span', { class: micOn ? 'state state-on' : 'state state-off', title: micOn ? 'Microphone on' : 'Microphone off' }, icon(micOn ? 'mic' : 'micOff'), h('span', { class: 'visually-hidden', text: micOn ? 'microphone on' : 'microphone off' })),
      h('span', { class: camOn ? 'state state-on' : 'state state-off', title: camOn ? 'Camera on' : 'Camera off' }, icon(camOn ? 'camera' : 'cameraOff'), h('span', { class: 'visually-hidden', text: camOn ? 'camera on' : 'camera off' })),
      sharing ? h('span', { class: 'state state-on', title: 'Sharing the screen' }, icon('screen'), h('span', { class: 'visually-hidden', text: 'sharing the screen' })) : '',
    );
    v.item.dataset.mic = micOn ? 'on' : 'off';
    v.item.dataset.camera = camOn ? 'on' : 'off';
    v.item.dataset.screen = sharing ? 'on' : 'off';
    v.item.dataset.hand = hand ? 'up' : 'down';
    v.tile.dataset.mic = micOn ? 'on' : 'off';
    v.tile.dataset.camera = camOn ? 'on' : 'off';
    const moderator = !!this.moderation?.isModerator();
    if (moderator !== v.moderated) {
      v.moderated = moderator;
      const menu = moderator ? this.moderation!.actionsFor(p) : null;
      v.actionsSlot.replaceChildren(...(menu ? [menu] : []));
    }
    (v.item.firstElementChild as HTMLElement).textContent = initials(name);

    // Video: attach the camera track when there is one and it is not muted.
    const pub = p.getTrackPublication(Track.Source.Camera);
    const track = pub && !pub.isMuted ? pub.track : undefined;
    if (track !== v.attached) {
      v.attached?.detach(v.video);
      if (track) track.attach(v.video);
      v.attached = track;
    }
    const showVideo = !!track;
    v.video.hidden = !showVideo;
    v.avatar.hidden = showVideo;
    v.tile.classList.toggle('tile-no-video', !showVideo);
    this.syncScreen(p, name, isLocal);
  }

  /** Shows, updates or removes the participant's screen-share tile. */
  private syncScreen(p: Participant, name: string, isLocal: boolean): void {
    const pub = p.getTrackPublication(Track.Source.ScreenShare);
    const track = pub && !pub.isMuted ? pub.track : undefined;
    let v = this.screens.get(p.identity);
    if (!track) {
      if (v) this.removeScreen(p.identity, v);
      return;
    }
    if (!v) {
      const video = h('video', { class: 'tile-video', playsinline: true, autoplay: true, muted: true });
      video.muted = true;
      const label = h('span', { class: 'tile-name' });
      const tile = h(
        'div',
        { class: 'tile tile-screen', 'data-testid': 'screen-tile', 'data-identity': p.identity, role: 'group' },
        video,
        h('div', { class: 'tile-footer' }, icon('screen'), label),
      );
      v = { tile, video, label };
      this.screens.set(p.identity, v);
      this.grid.prepend(tile);
      this.layoutGrid();
    }
    const text = isLocal ? 'Your screen' : `${name}'s screen`;
    v.tile.setAttribute('aria-label', text);
    v.label.textContent = text;
    if (track !== v.attached) {
      v.attached?.detach(v.video);
      track.attach(v.video);
      v.attached = track;
    }
  }

  private removeScreen(identity: string, v: ScreenView): void {
    v.attached?.detach(v.video);
    v.tile.remove();
    this.screens.delete(identity);
    this.layoutGrid();
  }

  private remove(p: RemoteParticipant): void {
    const v = this.views.get(p.identity);
    if (!v) return;
    v.attached?.detach(v.video);
    v.tile.remove();
    v.item.remove();
    this.views.delete(p.identity);
    const screen = this.screens.get(p.identity);
    if (screen) this.removeScreen(p.identity, screen);
    this.afterMembershipChange();
  }

  private afterMembershipChange(): void {
    const count = this.views.size;
    this.listTitle.textContent = `Participants (${count})`;
    this.panelButton.replaceChildren(icon('people'), h('span', { text: `People (${count})` }));
    this.panelButton.setAttribute('aria-label', `Participants, ${count} in the meeting`);
    this.layoutGrid();
  }

  private showSpeakers(speakers: Participant[]): void {
    const speaking = new Set(speakers.map((s) => s.identity));
    for (const [identity, v] of this.views) {
      const on = speaking.has(identity);
      v.tile.classList.toggle('speaking', on);
      v.item.classList.toggle('speaking', on);
    }
  }

  // ----- audio -------------------------------------------------------------

  private attachAudioOf(p: RemoteParticipant): void {
    for (const pub of p.audioTrackPublications.values()) {
      if (pub.track) this.attachAudio(pub.track);
    }
  }

  private attachAudio(track: RemoteTrack): void {
    const el = track.attach();
    if (!el.isConnected) this.audioSink.appendChild(el);
  }

  private updateAudioPlayback(): void {
    this.audioButton.hidden = this.room.canPlaybackAudio;
  }

  // ----- controls ----------------------------------------------------------

  private updateControls(): void {
    const lp = this.room.localParticipant;
    const micOn = lp.isMicrophoneEnabled;
    const camOn = lp.isCameraEnabled;
    this.micButton.replaceChildren(icon(micOn ? 'mic' : 'micOff'), h('span', { text: micOn ? 'Mute' : 'Unmute' }));
    this.micButton.setAttribute('aria-label', micOn ? 'Turn microphone off' : 'Turn microphone on');
    this.micButton.setAttribute('aria-pressed', String(!micOn));
    this.micButton.classList.toggle('control-off', !micOn);
    this.camButton.replaceChildren(icon(camOn ? 'camera' : 'cameraOff'), h('span', { text: camOn ? 'Stop video' : 'Start video' }));
    this.camButton.setAttribute('aria-label', camOn ? 'Turn camera off' : 'Turn camera on');
    this.camButton.setAttribute('aria-pressed', String(!camOn));
    this.camButton.classList.toggle('control-off', !camOn);
    const sharing = lp.isScreenShareEnabled;
    this.screenButton.replaceChildren(icon(sharing ? 'screenOff' : 'screen'), h('span', { text: sharing ? 'Stop sharing' : 'Share screen' }));
    this.screenButton.setAttribute('aria-label', sharing ? 'Stop sharing your screen' : 'Share your screen');
    this.screenButton.setAttribute('aria-pressed', String(sharing));
    this.screenButton.classList.toggle('control-active', sharing);

    // Rights: a control that would switch something on without the right
    // stays visible, marked unavailable, and says why (the server enforces it).
    const reasons: string[] = [];
    const gate = (button: HTMLButtonElement, source: Source, on: boolean, why: string) => {
      const blocked = !on && !mayPublish(lp, source);
      button.setAttribute('aria-disabled', String(blocked));
      button.classList.toggle('control-locked', blocked);
      if (blocked) {
        button.title = why;
        button.setAttribute('aria-describedby', 'controls-hint');
        reasons.push(why);
      } else {
        button.removeAttribute('title');
        button.removeAttribute('aria-describedby');
      }
    };
    gate(this.micButton, 'microphone', micOn, 'The hosts have not allowed you to use your microphone.');
    gate(this.camButton, 'camera', camOn, 'The hosts have not allowed you to use your camera.');
    gate(this.screenButton, 'screen_share', sharing, 'Only people the hosts allow can share their screen.');
    this.controlsHint.textContent = reasons.join(' ');
    this.controlsHint.hidden = reasons.length === 0;
    this.chat.setAllowed(mayChat(lp));
    this.files?.setAllowed(this.moderation?.mayShareFiles() ?? false);

    const hand = handRaisedAt(lp) !== null;
    this.handButton.replaceChildren(icon('hand'), h('span', { text: hand ? 'Lower hand' : 'Raise hand' }));
    this.handButton.setAttribute('aria-pressed', String(hand));
    this.handButton.classList.toggle('control-active', hand);
  }

  /** Explains, instead of acting, when a control is unavailable. */
  private blocked(button: HTMLButtonElement): boolean {
    if (button.getAttribute('aria-disabled') !== 'true') return false;
    notify(button.title || 'This is not allowed in this meeting.', 'warning');
    return true;
  }

  /** Own role changed (e.g. made co-host): moderation menus and controls follow. */
  private afterRoleChange(): void {
    for (const p of this.everyone()) this.sync(p);
    this.updateControls();
  }

  /** The person clicked "Unmute" on a host's request: only then is anything switched on. */
  private async unmuteOnRequest(source: 'microphone' | 'camera'): Promise<void> {
    const lp = this.room.localParticipant;
    if (source === 'microphone' && !lp.isMicrophoneEnabled) await this.toggleMic();
    if (source === 'camera' && !lp.isCameraEnabled) await this.toggleCamera();
  }

  /** Starts or stops sharing the screen (with its audio where the browser offers it). */
  private async toggleScreenShare(): Promise<void> {
    if (this.busy.screen || this.blocked(this.screenButton)) return;
    this.busy.screen = true;
    this.screenButton.disabled = true;
    const lp = this.room.localParticipant;
    try {
      await lp.setScreenShareEnabled(!lp.isScreenShareEnabled, { audio: true });
    } catch (err) {
      // Closing the browser's picker is not an error worth showing.
      if (!(err instanceof DOMException && err.name === 'NotAllowedError')) {
        notify(mediaErrorMessage('screen', err), 'error');
      }
    } finally {
      this.busy.screen = false;
      this.screenButton.disabled = false;
      this.updateControls();
      this.sync(lp);
    }
  }

  private async toggleMic(): Promise<void> {
    if (this.busy.mic || this.blocked(this.micButton)) return;
    this.busy.mic = true;
    this.micButton.disabled = true;
    const lp = this.room.localParticipant;
    try {
      const on = !lp.isMicrophoneEnabled;
      await lp.setMicrophoneEnabled(on);
      this.wanted.mic = on;
    } catch (err) {
      notify(mediaErrorMessage('microphone', err), 'error');
    } finally {
      this.busy.mic = false;
      this.micButton.disabled = false;
      this.updateControls();
      this.sync(lp);
    }
  }

  private async toggleCamera(): Promise<void> {
    if (this.busy.cam || this.blocked(this.camButton)) return;
    this.busy.cam = true;
    this.camButton.disabled = true;
    const lp = this.room.localParticipant;
    try {
      const on = !lp.isCameraEnabled;
      await lp.setCameraEnabled(on);
      this.wanted.cam = on;
    } catch (err) {
      notify(mediaErrorMessage('camera', err), 'error');
    } finally {
      this.busy.cam = false;
      this.camButton.disabled = false;
      this.updateControls();
      this.sync(lp);
    }
  }

  private deviceSelects: Array<{ kind: DeviceKind; fill: (d: MediaDeviceInfo[], selected?: string) => void }> = [];

  private deviceSettings(): HTMLElement {
    const section = h('details', { class: 'device-settings' }, h('summary', { text: 'Device settings' }));
    const kinds: Array<[DeviceKind, string]> = [
      ['videoinput', 'Camera'],
      ['audioinput', 'Microphone'],
    ];
    if (supportsAudioOutputSelection()) kinds.push(['audiooutput', 'Speaker']);
    for (const [kind, label] of kinds) {
      const sel = deviceSelect(`room-${kind}`, label, `room-${kind}-select`);
      sel.select.addEventListener('change', () => {
        const id = sel.select.value;
        this.devices[kind] = id;
        void this.room.switchActiveDevice(kind, id).catch(() => notify(`Could not switch to the selected ${label.toLowerCase()}.`, 'error'));
      });
      this.deviceSelects.push({ kind, fill: sel.fill });
      append(section, sel.field);
    }
    section.addEventListener('toggle', () => {
      if ((section as HTMLDetailsElement).open) void this.refreshDeviceLists();
    });
    return section;
  }

  private async refreshDeviceLists(): Promise<void> {
    for (const { kind, fill } of this.deviceSelects) {
      const devices = await listDevices(kind);
      fill(devices, this.room.getActiveDevice(kind) ?? this.devices[kind]);
    }
  }

  private async copyLink(): Promise<void> {
    const params = new URLSearchParams({ room: this.room.name || this.session.room });
    // The key travels only in the part after '#', which browsers never send.
    if (this.session.e2eeKey) params.set('key', this.session.e2eeKey);
    const link = `${window.location.origin}/#${params.toString()}`;
    await this.copyText(link, 'Room link');
  }

  private async copyText(text: string, what: string): Promise<void> {
    try {
      await navigator.clipboard.writeText(text);
      notify(`${what} copied`, 'success');
    } catch {
      notify(`${what}: ${text}`);
    }
  }

  // ----- connection --------------------------------------------------------

  private updateConnectionState(state: ConnectionState): void {
    const labels: Record<ConnectionState, string> = {
      [ConnectionState.Connecting]: 'Connecting…',
      [ConnectionState.Connected]: 'Connected',
      [ConnectionState.Reconnecting]: 'Reconnecting…',
      [ConnectionState.SignalReconnecting]: 'Reconnecting…',
      [ConnectionState.Disconnected]: 'Disconnected',
    };
    this.statusText.textContent = labels[state] ?? String(state);
    const screen = this.grid.closest('.screen');
    screen?.setAttribute('data-connection', state);
    const reconnecting = state === ConnectionState.Reconnecting || state === ConnectionState.SignalReconnecting;
    this.banner.hidden = !reconnecting;
    this.banner.textContent = reconnecting ? 'The connection was interrupted. Reconnecting…' : '';
  }

  private end(reason?: DisconnectReason): void {
    if (this.ended) return;
    this.ended = true;
    for (const cleanup of this.cleanups) cleanup();
    for (const v of this.views.values()) v.attached?.detach(v.video);
    for (const v of this.screens.values()) v.attached?.detach(v.video);
    this.audioSink.replaceChildren();
    const end: MeetingEnd = {
      micOn: this.wanted.mic,
      cameraOn: this.wanted.cam,
      devices: { ...this.devices },
    };
    if (reason !== undefined) end.reason = reason;
    const detail = disconnectDetail(reason);
    if (detail) end.detail = detail;
    this.room.removeAllListeners();
    this.onEnd(end);
  }
}

function disconnectDetail(reason?: DisconnectReason): string | undefined {
  switch (reason) {
    case undefined:
    case DisconnectReason.CLIENT_INITIATED:
      return undefined;
    case DisconnectReason.DUPLICATE_IDENTITY:
      return 'You joined this meeting from another window or device.';
    case DisconnectReason.SERVER_SHUTDOWN:
      return 'The server is restarting. Try to rejoin in a moment.';
    case DisconnectReason.PARTICIPANT_REMOVED:
      return 'You were removed from the meeting.';
    case DisconnectReason.ROOM_DELETED:
    case DisconnectReason.ROOM_CLOSED:
      return 'The meeting has ended.';
    case DisconnectReason.JOIN_FAILURE:
      return 'The meeting could not be joined.';
    case DisconnectReason.SIGNAL_CLOSE:
    case DisconnectReason.CONNECTION_TIMEOUT:
    case DisconnectReason.MEDIA_FAILURE:
    case DisconnectReason.STATE_MISMATCH:
      return 'The connection to the server was lost.';
    default:
      return 'The connection to the meeting was closed.';
  }
}

function connectErrorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const status = typeof err === 'object' && err !== null && 'status' in err ? (err as { status?: unknown }).status : undefined;
  if (status === 401 || status === 403) {
    return `You are not allowed to join this room. The invitation may have expired. (${message})`;
  }
  if (/timed out|timeout/i.test(message)) return 'The connection to the server timed out. Check your network and try again.';
  return `Could not connect to the meeting: ${message}`;
}
