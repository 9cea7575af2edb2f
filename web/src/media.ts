// Local camera and microphone: acquisition, friendly error messages and
// device lists.

import {
  createLocalAudioTrack,
  createLocalTracks,
  createLocalVideoTrack,
  LocalAudioTrack,
  LocalVideoTrack,
  MediaDeviceFailure,
  Room,
} from 'livekit-client';

export type DeviceKind = 'audioinput' | 'videoinput' | 'audiooutput';

export interface DeviceChoice {
  audioinput?: string;
  videoinput?: string;
  audiooutput?: string;
}

export interface AcquiredMedia {
  audio?: LocalAudioTrack;
  video?: LocalVideoTrack;
  audioError?: string;
  videoError?: string;
}

export function mediaAvailable(): boolean {
  return typeof navigator !== 'undefined' && !!navigator.mediaDevices?.getUserMedia;
}

const INSECURE_MESSAGE =
  'This page is not served over a secure (https) connection, so the browser does not allow camera or microphone use.';

export function mediaErrorMessage(device: 'camera' | 'microphone' | 'screen', error: unknown): string {
  if (!mediaAvailable()) return INSECURE_MESSAGE;
  switch (MediaDeviceFailure.getFailure(error)) {
    case MediaDeviceFailure.PermissionDenied:
      return `Access to your ${device} was blocked. To use it, allow it in your browser's settings for this site, then reload the page.`;
    case MediaDeviceFailure.NotFound:
      return `No ${device} was found.`;
    case MediaDeviceFailure.DeviceInUse:
      return `Your ${device} is in use by another application or could not be started.`;
    default:
      return `Your ${device} could not be started.`;
  }
}

function constraint(deviceId: string | undefined): { deviceId?: ConstrainDOMString } {
  return deviceId ? { deviceId: { exact: deviceId } } : {};
}

/**
 * Starts the requested devices. Both are asked for together (one browser
 * prompt); if that fails, each is tried alone so that a missing or blocked
 * camera does not prevent the microphone from working, and vice versa.
 */
export async function acquireMedia(wantAudio: boolean, wantVideo: boolean, devices: DeviceChoice): Promise<AcquiredMedia> {
  const result: AcquiredMedia = {};
  if (!wantAudio && !wantVideo) return result;
  if (!mediaAvailable()) {
    if (wantAudio) result.audioError = INSECURE_MESSAGE;
    if (wantVideo) result.videoError = INSECURE_MESSAGE;
    return result;
  }
  if (wantAudio && wantVideo) {
    try {
      const tracks = await createLocalTracks({
        audio: constraint(devices.audioinput),
        video: constraint(devices.videoinput),
      });
      for (const track of tracks) {
        if (track instanceof LocalAudioTrack) result.audio = track;
        else if (track instanceof LocalVideoTrack) result.video = track;
        else track.stop();
      }
      if (result.audio && result.video) return result;
    } catch {
      // Fall through and try each device on its own to tell which one failed.
    }
  }
  const [audio, video] = await Promise.all([
    wantAudio && !result.audio ? startAudio(devices.audioinput) : Promise.resolve(null),
    wantVideo && !result.video ? startVideo(devices.videoinput) : Promise.resolve(null),
  ]);
  if (audio) {
    if (audio.track) result.audio = audio.track;
    else result.audioError = audio.error;
  }
  if (video) {
    if (video.track) result.video = video.track;
    else result.videoError = video.error;
  }
  return result;
}

async function startAudio(deviceId?: string): Promise<{ track?: LocalAudioTrack; error?: string }> {
  try {
    return { track: await createLocalAudioTrack(constraint(deviceId)) };
  } catch (err) {
    if (deviceId) return startAudio(undefined);
    return { error: mediaErrorMessage('microphone', err) };
  }
}

async function startVideo(deviceId?: string): Promise<{ track?: LocalVideoTrack; error?: string }> {
  try {
    return { track: await createLocalVideoTrack(constraint(deviceId)) };
  } catch (err) {
    if (deviceId) return startVideo(undefined);
    return { error: mediaErrorMessage('camera', err) };
  }
}

/** Lists devices of one kind without prompting for permission. */
export async function listDevices(kind: DeviceKind): Promise<MediaDeviceInfo[]> {
  if (!mediaAvailable()) return [];
  try {
    return await Room.getLocalDevices(kind, false);
  } catch {
    return [];
  }
}

