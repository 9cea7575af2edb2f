// Short signal tones made with WebAudio: nothing is loaded from anywhere.
// Joins rise, leaves fall, someone waiting in the lobby and a request to
// unmute get a double tone.

export type Chime = 'join' | 'leave' | 'lobby' | 'ask';

const TONES: Record<Chime, Array<[frequency: number, start: number]>> = {
  join: [
    [523.25, 0],
    [783.99, 0.12],
  ],
  leave: [
    [783.99, 0],
    [523.25, 0.12],
  ],
  lobby: [
    [880, 0],
    [880, 0.22],
  ],
  ask: [
    [659.25, 0],
    [987.77, 0.16],
  ],
};

let context: AudioContext | null = null;

function audio(): AudioContext | null {
  if (context) return context;
  const Ctor = window.AudioContext ?? (window as unknown as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext;
  if (!Ctor) return null;
  try {
    context = new Ctor();
  } catch {
    return null;
  }
  return context;
}

/**
 * Plays a chime. Browsers may keep audio suspended until the page has been
 * used; the tone is then silent, and the visible notice still tells.
 * Each chime is also announced as a `conclave:chime` event on `window`.
 */
export function chime(kind: Chime): void {
  window.dispatchEvent(new CustomEvent('conclave:chime', { detail: kind }));
  const ctx = audio();
  if (!ctx) return;
  if (ctx.state === 'suspended') void ctx.resume().catch(() => undefined);
  const now = ctx.currentTime;
  for (const [frequency, start] of TONES[kind]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = 'sine';
    osc.frequency.value = frequency;
    const t = now + start;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.12, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.18);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + 0.2);
  }
}
