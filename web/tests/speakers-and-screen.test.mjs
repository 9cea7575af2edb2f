// Active speaker and screen share, seen by a third participant. A and B
// talk through a microphone the test controls (a tone that it switches on
// and off, in place of Chromium's fake microphone); C only listens. C's view
// must follow who speaks: the highlight moves from A to B when the tone
// moves. Then A shares its screen (Chromium's fake screen and its audio);
// B and C see a screen tile of A's and decode it, and it goes when A stops.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchParticipant, nonLoopback, printProblems, requireChromium } from './lib/browser.mjs';
import { participantItem, randomRoom } from './lib/app.mjs';
import { joinReceiveOnly, joinWithDevices } from './lib/receive-only.mjs';
import { startServer } from './lib/server.mjs';
import { sleep } from './lib/video-stats.mjs';

/**
 * Runs in the page before the app: every microphone stream the app asks
 * for carries a 440 Hz tone instead, at a level set by `window.__setTone`.
 */
function toneMicrophone() {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  let ctx = null;
  let gain = null;
  let level = 0;
  window.__setTone = (on) => {
    level = on ? 0.5 : 0;
    if (gain) gain.gain.value = level;
    return gain !== null;
  };
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    if (!constraints?.audio) return stream;
    if (!ctx) {
      ctx = new AudioContext();
      const osc = ctx.createOscillator();
      osc.frequency.value = 440;
      gain = ctx.createGain();
      gain.gain.value = level;
      osc.connect(gain);
      osc.start();
    }
    await ctx.resume();
    const dest = ctx.createMediaStreamDestination();
    gain.connect(dest);
    for (const t of stream.getAudioTracks()) {
      stream.removeTrack(t);
      t.stop();
    }
    stream.addTrack(dest.stream.getAudioTracks()[0]);
    return stream;
  };
}

const AUTOPLAY = { extraArgs: ['--autoplay-policy=no-user-gesture-required'] };

/** Names of the participants whose tile is highlighted as speaking on `page`. */
async function speaking(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-testid="video-tile"].speaking')].map((t) => (t.getAttribute('aria-label') ?? '').replace(/ \(you\)$/, '')),
  );
}

/** Waits until exactly `names` are highlighted on `page`; returns the milliseconds it took. */
async function waitForSpeakers(page, names, ms) {
  const start = Date.now();
  let now = [];
  while (Date.now() - start < ms) {
    now = await speaking(page);
    if (now.length === names.length && names.every((n) => now.includes(n))) return Date.now() - start;
    await sleep(100);
  }
  assert.fail(`after ${ms / 1000} s the speakers shown are ${JSON.stringify(now)}, not ${JSON.stringify(names)}`);
}

/** Frames the screen tile of `name` has shown on `page`, and its video size. */
async function screenTile(page, name) {
  return page.evaluate((label) => {
    const tile = document.querySelector(`[data-testid="screen-tile"][aria-label="${label}"]`);
    const video = tile?.querySelector('video');
    if (!video) return null;
    return { frames: video.getVideoPlaybackQuality().totalVideoFrames, width: video.videoWidth, height: video.videoHeight };
  }, `${name}'s screen`);
}

/** Inbound audio streams on `page` that are receiving packets. */
async function audioStreams(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') out.push({ ssrc: s.ssrc, packets: s.packetsReceived ?? 0 });
      });
    }
    return out;
  });
}

/** Number of inbound audio streams whose packet count rises within `ms`. */
async function liveAudioStreams(page, ms = 2_000) {
  const before = new Map((await audioStreams(page)).map((s) => [s.ssrc, s.packets]));
  await sleep(ms);
  return (await audioStreams(page)).filter((s) => s.packets > (before.get(s.ssrc) ?? 0)).length;
}

test('the speaker highlight follows the voice, and a shared screen is seen by the others', { timeout: 150_000 }, async (t) => {
  requireChromium();
  let server;
  const people = [];
  let failed = true;
  try {
    server = await startServer();
    const room = randomRoom();
    const a = await launchParticipant('speaker-a', AUTOPLAY);
    people.push(a);
    const b = await launchParticipant('speaker-b', AUTOPLAY);
    people.push(b);
    const c = await launchParticipant('listener-c', AUTOPLAY);
    people.push(c);
    await a.page.addInitScript(toneMicrophone);
    await b.page.addInitScript(toneMicrophone);
    // Cameras off: the test is about audio and the screen.
    await joinWithDevices(a.page, server.url, { name: 'A', room, camera: false, mic: true });
    await joinWithDevices(b.page, server.url, { name: 'B', room, camera: false, mic: true });
    await joinReceiveOnly(c.page, server.url, { name: 'C', room });
    for (const name of ['A', 'B']) await participantItem(c.page, name).waitFor({ state: 'attached', timeout: 30_000 });
    const hasTone = await Promise.all([a.page.evaluate(() => window.__setTone(false)), b.page.evaluate(() => window.__setTone(false))]);
    assert.deepEqual(hasTone, [true, true], 'the test microphone was not used by the app');

    // Nobody speaks: nobody is highlighted.
    await waitForSpeakers(c.page, [], 15_000);
    // A speaks.
    await a.page.evaluate(() => window.__setTone(true));
    const toA = await waitForSpeakers(c.page, ['A'], 15_000);
    // The voice moves from A to B.
    await a.page.evaluate(() => window.__setTone(false));
    await b.page.evaluate(() => window.__setTone(true));
    const toB = await waitForSpeakers(c.page, ['B'], 15_000);
    // B falls silent.
    await b.page.evaluate(() => window.__setTone(false));
    const quiet = await waitForSpeakers(c.page, [], 15_000);
    t.diagnostic(`speaker shown after: A ${toA} ms, A -> B ${toB} ms, silence ${quiet} ms`);

    // A shares the screen; B and C see it and decode it.
    const audioBefore = await liveAudioStreams(c.page);
    await a.page.getByTestId('screen-share-toggle').click();
    await a.page.waitForFunction(() => document.querySelector('[data-testid="screen-share-toggle"]')?.getAttribute('aria-pressed') === 'true', null, {
      timeout: 20_000,
    });
    for (const viewer of [b, c]) {
      const deadline = Date.now() + 30_000;
      let first = null;
      let now = null;
      for (;;) {
        now = await screenTile(viewer.page, 'A');
        if (now && !first) first = now;
        if (first && now && now.width > 0 && now.frames >= first.frames + 10) break;
        assert.ok(Date.now() < deadline, `${viewer.label} did not show A's screen: ${JSON.stringify(now)}`);
        await sleep(500);
      }
      t.diagnostic(`${viewer.label} shows A's screen at ${now.width}x${now.height}, ${now.frames} frames`);
    }
    // The screen's audio arrives as a stream of its own.
    const audioDuring = await liveAudioStreams(c.page);
    t.diagnostic(`C receives ${audioBefore} audio streams before the share and ${audioDuring} during it`);
    assert.equal(audioDuring, audioBefore + 1, 'the shared screen brought no audio stream of its own');

    // A stops sharing; the tile goes for the others.
    await a.page.getByTestId('screen-share-toggle').click();
    for (const viewer of [b, c]) {
      await viewer.page.locator('[data-testid="screen-tile"]').waitFor({ state: 'detached', timeout: 20_000 });
    }
    for (const person of people) assert.deepEqual(nonLoopback(person.requests), [], `${person.label} left loopback`);
    failed = false;
  } finally {
    if (failed) {
      printProblems(people);
      if (server) console.error(`--- conclave server output ---\n${server.log()}`);
    }
    await Promise.all(people.map((p) => p.close()));
    await server?.stop();
  }
});
