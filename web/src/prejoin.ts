// Pre-join screen: camera preview, microphone level, device choice and
// whether to join with camera and microphone on.

import { createAudioAnalyser, LocalAudioTrack, LocalVideoTrack, supportsAudioOutputSelection } from 'livekit-client';
import { readToken, type Session } from './api';
import { acquireMedia, listDevices, type DeviceChoice } from './media';
import { deviceSelect, h, icon, initials, showScreen } from './ui';

export interface JoinChoices {
  audio?: LocalAudioTrack;
  video?: LocalVideoTrack;
  devices: DeviceChoice;
}

export interface PrejoinOptions {
  session: Session;
  /** Error from a previous attempt to connect. */
  error?: string;
  /** Previous choices, kept when coming back to this screen. */
  micOn?: boolean;
  cameraOn?: boolean;
  devices?: DeviceChoice;
  /** Connects to the room; rejects with a message to show if that fails. */
  onJoin: (choices: JoinChoices) => Promise<void>;
  onCancel: () => void;
}

export function showPrejoin(options: PrejoinOptions): void {
  const { session } = options;
  const info = readToken(session.token);
  const roomName = info?.room ?? session.room;
  const displayName = info?.name || session.name || info?.identity || '';

  let audio: LocalAudioTrack | undefined;
  let video: LocalVideoTrack | undefined;
  let micOn = options.micOn ?? true;
  let cameraOn = options.cameraOn ?? true;
  const devices: DeviceChoice = { ...options.devices };
  let pending: Promise<void> = Promise.resolve();
  let active = true;
  let stopMeter: (() => void) | null = null;

  // Preview
  const video_el = h('video', { class: 'preview-video mirrored', muted: true, playsinline: true, autoplay: true, 'aria-hidden': 'true', 'data-testid': 'prejoin-video' });
  video_el.muted = true;
  const placeholder = h('div', { class: 'preview-placeholder' }, h('span', { class: 'avatar', text: initials(displayName) }));
  const previewStatus = h('p', { class: 'preview-status', 'aria-live': 'polite', text: 'Starting camera and microphone…' });
  const preview = h('div', { class: 'preview' }, video_el, placeholder, previewStatus);

  // Microphone level
  const meterFill = h('span', { class: 'meter-fill' });
  const meter = h('div', { class: 'meter', 'aria-hidden': 'true' }, meterFill);
  const micStatus = h('p', { class: 'mic-status', 'aria-live': 'polite' });

  // Toggles
  const micToggle = h('button', { type: 'button', class: 'toggle', 'data-testid': 'prejoin-mic-toggle' });
  const camToggle = h('button', { type: 'button', class: 'toggle', 'data-testid': 'prejoin-camera-toggle' });

  // Devices
  const cameraSelect = deviceSelect('prejoin-camera', 'Camera', 'camera-select');
  const micSelect = deviceSelect('prejoin-mic', 'Microphone', 'mic-select');
  const speakerSelect = supportsAudioOutputSelection() ? deviceSelect('prejoin-speaker', 'Speaker', 'speaker-select') : null;

  const problems = h('div', { class: 'problems', role: 'alert', 'data-testid': 'media-problems' });
  const joinError = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'prejoin-error', hidden: !options.error, text: options.error ?? '' });
  const joinButton = h('button', { type: 'button', class: 'button button-primary', 'data-testid': 'prejoin-join-button' }, 'Join now');
  const backButton = h('button', { type: 'button', class: 'button button-secondary', 'data-testid': 'prejoin-back-button' }, 'Back');

  const mediaProblems: { audio?: string; video?: string } = {};
  const renderProblems = () => {
    const list = [mediaProblems.video, mediaProblems.audio].filter((m): m is string => !!m);
    problems.replaceChildren(...list.map((m) => h('p', { class: 'problem', text: m })));
    if (list.length > 0) problems.appendChild(h('p', { class: 'problem-hint', text: 'You can still join; others will not see or hear you through the missing device.' }));
  };

  const renderToggles = () => {
    micToggle.replaceChildren(icon(micOn ? 'mic' : 'micOff'), h('span', { text: micOn ? 'Microphone on' : 'Microphone off' }));
    micToggle.setAttribute('aria-pressed', String(micOn));
    micToggle.classList.toggle('toggle-off', !micOn);
    camToggle.replaceChildren(icon(cameraOn ? 'camera' : 'cameraOff'), h('span', { text: cameraOn ? 'Camera on' : 'Camera off' }));
    camToggle.setAttribute('aria-pressed', String(cameraOn));
    camToggle.classList.toggle('toggle-off', !cameraOn);
  };

  const renderPreview = () => {
    const showVideo = cameraOn && !!video;
    video_el.hidden = !showVideo;
    placeholder.hidden = showVideo;
    if (!cameraOn) previewStatus.textContent = 'Your camera is off.';
    else if (!video) previewStatus.textContent = mediaProblems.video ? 'Camera unavailable.' : 'Starting camera…';
    else previewStatus.textContent = '';
    previewStatus.hidden = previewStatus.textContent === '';
    meter.classList.toggle('meter-off', !micOn || !audio);
    if (!micOn) micStatus.textContent = 'Your microphone is off.';
    else if (!audio) micStatus.textContent = mediaProblems.audio ? 'Microphone unavailable.' : 'Starting microphone…';
    else micStatus.textContent = 'Speak to test your microphone.';
  };

  const startMeter = (track: LocalAudioTrack) => {
    stopMeter?.();
    const { calculateVolume, cleanup } = createAudioAnalyser(track, { cloneTrack: true, smoothingTimeConstant: 0.6 });
    let frame = 0;
    const tick = () => {
      const level = Math.min(1, calculateVolume() * 3);
      meterFill.style.transform = `scaleX(${level.toFixed(3)})`;
      frame = window.requestAnimationFrame(tick);
    };
    frame = window.requestAnimationFrame(tick);
    stopMeter = () => {
      window.cancelAnimationFrame(frame);
      meterFill.style.transform = 'scaleX(0)';
      void cleanup();
      stopMeter = null;
    };
  };

  const setAudio = (track: LocalAudioTrack | undefined) => {
    if (audio && audio !== track) audio.stop();
    audio = track;
    if (audio) startMeter(audio);
    else stopMeter?.();
  };

  const setVideo = (track: LocalVideoTrack | undefined) => {
    if (video && video !== track) {
      video.detach(video_el);
      video.stop();
    }
    video = track;
    if (video) video.attach(video_el);
  };

  const refreshDevices = async () => {
    const [cams, mics, speakers] = await Promise.all([
      listDevices('videoinput'),
      listDevices('audioinput'),
      speakerSelect ? listDevices('audiooutput') : Promise.resolve([]),
    ]);
    if (!active) return;
    cameraSelect.fill(cams, (await video?.getDeviceId()) ?? devices.videoinput);
    micSelect.fill(mics, (await audio?.getDeviceId()) ?? devices.audioinput);
    speakerSelect?.fill(speakers, devices.audiooutput);
  };

  /** Brings the started devices in line with the toggles. */
  const sync = (): Promise<void> => {
    pending = pending.then(async () => {
      if (!active) return;
      const needAudio = micOn && !audio;
      const needVideo = cameraOn && !video;
      if (!micOn && audio) setAudio(undefined);
      if (!cameraOn && video) setVideo(undefined);
      if (needAudio || needVideo) {
        renderPreview();
        const got = await acquireMedia(needAudio, needVideo, devices);
        if (!active) {
          got.audio?.stop();
          got.video?.stop();
          return;
        }
        if (needAudio) {
          mediaProblems.audio = got.audioError;
          if (got.audio && micOn) setAudio(got.audio);
          else got.audio?.stop();
        }
        if (needVideo) {
          mediaProblems.video = got.videoError;
          if (got.video && cameraOn) setVideo(got.video);
          else got.video?.stop();
        }
        renderProblems();
        await refreshDevices();
      }
      renderPreview();
    });
    return pending;
  };

  micToggle.addEventListener('click', () => {
    micOn = !micOn;
    renderToggles();
    renderPreview();
    void sync();
  });
  camToggle.addEventListener('click', () => {
    cameraOn = !cameraOn;
    renderToggles();
    renderPreview();
    void sync();
  });

  cameraSelect.select.addEventListener('change', () => {
    devices.videoinput = cameraSelect.select.value;
    pending = pending.then(async () => {
      if (video) await video.setDeviceId({ exact: devices.videoinput! }).catch(() => undefined);
    });
  });
  micSelect.select.addEventListener('change', () => {
    devices.audioinput = micSelect.select.value;
    pending = pending.then(async () => {
      if (audio) {
        await audio.setDeviceId({ exact: devices.audioinput! }).catch(() => undefined);
        startMeter(audio);
      }
    });
  });
  speakerSelect?.select.addEventListener('change', () => {
    devices.audiooutput = speakerSelect.select.value;
  });

  const onDeviceChange = () => void refreshDevices();
  navigator.mediaDevices?.addEventListener('devicechange', onDeviceChange);

  const teardown = (keep: { audio?: LocalAudioTrack; video?: LocalVideoTrack }) => {
    active = false;
    navigator.mediaDevices?.removeEventListener('devicechange', onDeviceChange);
    stopMeter?.();
    if (video) video.detach(video_el);
    if (audio && audio !== keep.audio) audio.stop();
    if (video && video !== keep.video) video.stop();
  };

  joinButton.addEventListener('click', () => {
    joinButton.disabled = true;
    backButton.disabled = true;
    joinButton.textContent = 'Joining…';
    joinError.hidden = true;
    void pending
      .then(async () => {
        const choices: JoinChoices = { devices: { ...devices } };
        if (micOn && audio) choices.audio = audio;
        if (cameraOn && video) choices.video = video;
        await options.onJoin(choices);
        teardown(choices);
      })
      .catch((err: unknown) => {
        if (!active) return;
        joinError.textContent = err instanceof Error ? err.message : String(err);
        joinError.hidden = false;
        joinButton.disabled = false;
        backButton.disabled = false;
        joinButton.textContent = 'Join now';
      });
  });

  backButton.addEventListener('click', () => {
    teardown({});
    options.onCancel();
  });

  const title = h('h1', { id: 'prejoin-title', text: 'Get ready to join' });
  const screen = h(
    'section',
    { class: 'screen screen-prejoin', 'aria-labelledby': 'prejoin-title' },
    h(
      'div',
      { class: 'card card-wide' },
      title,
      h(
        'p',
        { class: 'lead' },
        session.title ? 'Meeting ' : 'Room ',
        h('strong', { 'data-testid': 'prejoin-room', text: session.title || roomName }),
        displayName ? ' · joining as ' : '',
        displayName ? h('strong', { text: displayName }) : '',
      ),
      h(
        'div',
        { class: 'prejoin-layout' },
        h('div', { class: 'prejoin-media' }, preview, h('div', { class: 'toggles' }, micToggle, camToggle), h('div', { class: 'mic-level' }, h('span', { class: 'mic-level-label', text: 'Microphone level' }), meter), micStatus),
        h(
          'div',
          { class: 'prejoin-settings' },
          h('h2', { text: 'Devices' }),
          cameraSelect.field,
          micSelect.field,
          speakerSelect?.field,
          problems,
          joinError,
          h('div', { class: 'actions' }, backButton, joinButton),
        ),
      ),
    ),
  );

  renderToggles();
  renderPreview();
  showScreen(screen, title);
  void sync();
}
