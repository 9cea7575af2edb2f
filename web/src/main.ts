// Entry point: moves between the landing, pre-join, meeting and
// after-meeting screens.

import { startAccount } from './account';
import { ApiError, readToken, requestJoinToken, takeHashParams, type Session } from './api';
import { showLanding } from './landing';
import { showLeft } from './left';
import type { DeviceChoice } from './media';
import { showPrejoin } from './prejoin';
import { enterRoom, type MeetingEnd } from './room';
import { meetingIdFromPath, showInvitation } from './meetings/invitation';
import { startMeetings } from './meetings/list';
import { clearNotices } from './ui';

interface Preferences {
  micOn?: boolean;
  cameraOn?: boolean;
  devices?: DeviceChoice;
}

function landing(name?: string, room?: string, message?: string): void {
  const options: Parameters<typeof showLanding>[0] = { onSession: (session) => prejoin(session, {}) };
  if (name !== undefined) options.name = name;
  if (room !== undefined) options.room = room;
  if (message !== undefined) options.message = message;
  showLanding(options);
}

/** The end-to-end key from the link this page was opened with, if any. */
let e2eeKey: string | undefined;

function prejoin(session: Session, prefs: Preferences): void {
  if (e2eeKey && !session.e2eeKey) session.e2eeKey = e2eeKey;
  const options: Parameters<typeof showPrejoin>[0] = {
    session,
    onJoin: (choices) =>
      enterRoom(session, choices, (end) => {
        clearNotices();
        left(session, end);
      }),
    onCancel: () => (session.meetingId ? invitation(session.meetingId) : landing(session.name || undefined, session.room || undefined)),
  };
  if (prefs.micOn !== undefined) options.micOn = prefs.micOn;
  if (prefs.cameraOn !== undefined) options.cameraOn = prefs.cameraOn;
  if (prefs.devices !== undefined) options.devices = prefs.devices;
  showPrejoin(options);
}

function left(session: Session, end: MeetingEnd): void {
  const prefs: Preferences = { micOn: end.micOn, cameraOn: end.cameraOn, devices: end.devices };
  const options: Parameters<typeof showLeft>[0] = {
    room: session.room,
    onRejoin: async () => {
      // Open rooms hand out short-lived tokens: ask for a fresh one.
      if (session.source === 'open') {
        const fresh = await requestJoinToken(session.room, session.name).catch((err: unknown) => {
          throw err instanceof ApiError ? err : new Error('Could not rejoin. Please try again.');
        });
        prejoin(fresh, prefs);
      } else {
        prejoin(session, prefs);
      }
    },
    onHome: () => (session.meetingId ? invitation(session.meetingId) : landing(session.name || undefined, session.source === 'open' ? session.room : undefined)),
  };
  if (end.detail) options.detail = end.detail;
  showLeft(options);
}

/** The invitation page of a meeting, then its lobby, pre-join and room. */
function invitation(id: string, message?: string): void {
  const options: Parameters<typeof showInvitation>[0] = { id, onAdmitted: (session) => prejoin(session, {}) };
  if (message) options.message = message;
  void showInvitation(options);
}

function start(): void {
  const path = window.location.pathname;
  if (path === '/account' || path.startsWith('/account/')) {
    startAccount();
    return;
  }
  if (path === '/meetings' || path === '/meetings/') {
    void startMeetings();
    return;
  }
  const params = takeHashParams();
  e2eeKey = params.key;
  const meetingId = meetingIdFromPath(path);
  if (meetingId) {
    invitation(meetingId);
    return;
  }
  if (params.token) {
    const info = readToken(params.token);
    if (!info) {
      landing(undefined, params.room, 'The invitation link is not valid. Enter a room name to join an open room.');
      return;
    }
    if (info.expiresAt && info.expiresAt.getTime() < Date.now()) {
      landing(undefined, info.room, 'The invitation link has expired. Ask for a new one.');
      return;
    }
    const session: Session = { token: params.token, room: info.room ?? '', name: info.name ?? '', source: 'invite' };
    if (info.identity) session.identity = info.identity;
    prejoin(session, {});
    return;
  }
  landing(undefined, params.room);
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', start, { once: true });
} else {
  start();
}
