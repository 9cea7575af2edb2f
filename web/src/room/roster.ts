// What the roster says about a participant: role (from the attribute the
// server sets), guest, and the kind of participant for bots, recorders and
// phone lines, so that nobody is in a meeting unlabelled.

import { ParticipantKind, Track, type LocalParticipant, type Participant } from 'livekit-client';
import type { Role } from '../meetings/api';

export interface Label {
  text: string;
  kind: 'role' | 'guest' | 'bot';
  /** Longer text for screen readers and tooltips. */
  title: string;
}

const ROLES: Record<string, Role> = { owner: 'owner', host: 'host', cohost: 'cohost', participant: 'participant', guest: 'guest' };

export function roleOf(p: Participant): Role | null {
  return ROLES[p.attributes['conclave.role'] ?? ''] ?? null;
}

export function isModeratorRole(role: Role | null): boolean {
  return role === 'owner' || role === 'host' || role === 'cohost';
}

export function isHostRole(role: Role | null): boolean {
  return role === 'owner' || role === 'host';
}

/** When the hand was raised (Unix ms), or null. */
export function handRaisedAt(p: Participant): number | null {
  const v = p.attributes['conclave.hand'];
  if (!v) return null;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : null;
}

export function labels(p: Participant): Label[] {
  const out: Label[] = [];
  switch (p.kind) {
    case ParticipantKind.AGENT:
      out.push({ text: 'bot', kind: 'bot', title: 'An automated participant (bot)' });
      break;
    case ParticipantKind.EGRESS:
      out.push({ text: 'recorder', kind: 'bot', title: 'Records or streams the meeting' });
      break;
    case ParticipantKind.SIP:
      out.push({ text: 'phone', kind: 'bot', title: 'Joined by telephone' });
      break;
    case ParticipantKind.INGRESS:
      out.push({ text: 'stream', kind: 'bot', title: 'A media stream brought into the meeting' });
      break;
    default:
      break;
  }
  const role = roleOf(p);
  if (role === 'owner') out.push({ text: 'owner', kind: 'role', title: 'Owner of the meeting' });
  else if (role === 'host') out.push({ text: 'host', kind: 'role', title: 'Host' });
  else if (role === 'cohost') out.push({ text: 'co-host', kind: 'role', title: 'Co-host' });
  if (role === 'guest' || p.identity.startsWith('gst_')) out.push({ text: 'guest', kind: 'guest', title: 'Guest without an account' });
  return out;
}

/** The verified domain of an account participant, if the server gave one. */
export function verifiedDomain(p: Participant): string | null {
  return p.attributes['conclave.verified'] || null;
}

export type Source = 'microphone' | 'camera' | 'screen_share';

/** Whether the participant's permissions allow publishing a source. */
export function mayPublish(p: LocalParticipant, source: Source): boolean {
  const perms = p.permissions;
  if (!perms) return true;
  if (!perms.canPublish) return false;
  if (perms.canPublishSources.length === 0) return true;
  const wanted =
    source === 'microphone' ? Track.Source.Microphone : source === 'camera' ? Track.Source.Camera : Track.Source.ScreenShare;
  return perms.canPublishSources.includes(Track.sourceToProto(wanted));
}

export function mayChat(p: LocalParticipant): boolean {
  return p.permissions ? p.permissions.canPublishData : true;
}
