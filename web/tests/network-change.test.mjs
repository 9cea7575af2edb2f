// A publisher changes networks mid-call: its browser runs in a network
// namespace the test makes, and the namespace's address is replaced by
// another one, as when a laptop moves from one network to the next. Its
// signalling connection and media path break; the client resumes its
// session from the new address, and the subscriber must decode the same
// track again (the same track id: nothing was published anew) within the
// test's deadline. How long the video stalled is printed, not asserted.
//
// Network: only loopback, the host side of the veth pair and the namespace.
// Beyond loopback the server speaks HTTPS with a self-signed certificate it
// made at its first start; the test browsers accept any certificate, which
// is fine because they talk only to the server this test started.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchParticipant, printProblems, requireChromium } from './lib/browser.mjs';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { joinReceiveOnly } from './lib/receive-only.mjs';
import { makeNamespace, randomLink, requireNetworkTools } from './lib/netns.mjs';
import { startServer } from './lib/server.mjs';
import { sleep } from './lib/video-stats.mjs';

const TRUST = { trustAnyCertificate: true };

/** Frames decoded per inbound video track id (the server's track id). */
async function videoByTrack(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier) {
          out[s.trackIdentifier] = (out[s.trackIdentifier] ?? 0) + (s.framesDecoded ?? 0);
        }
      });
    }
    return out;
  });
}

/** Waits until some track's decoded frames rise; returns its id. */
async function decodingTrack(page, ms, what) {
  const deadline = Date.now() + ms;
  let before = await videoByTrack(page);
  while (Date.now() < deadline) {
    await sleep(500);
    const now = await videoByTrack(page);
    const rising = Object.keys(now).filter((id) => now[id] > (before[id] ?? 0));
    if (rising.length > 0) return rising[0];
    before = now;
  }
  assert.fail(`${what}: no video decoded within ${ms / 1000} s; ${JSON.stringify(before)}`);
}

test('a publisher that changes its address resumes without publishing again', { timeout: 150_000 }, async (t) => {
  requireChromium();
  requireNetworkTools();
  const link = randomLink('cqm');
  const ns = await makeNamespace(link.name, link.hostAddr, link.nsAddr);
  let server;
  const people = [];
  let failed = true;
  try {
    server = await startServer({ host: ns.hostAddr });
    const room = randomRoom();
    const mover = await launchParticipant('moving-publisher', { executablePath: ns.chromium, ...TRUST });
    people.push(mover);
    const viewer = await launchParticipant('viewer', TRUST);
    people.push(viewer);
    await joinMeeting(mover.page, server.url, { name: 'Mover', room });
    await joinReceiveOnly(viewer.page, server.url, { name: 'Viewer', room });
    await participantItem(viewer.page, 'Mover').waitFor({ state: 'attached', timeout: 30_000 });
    const track = await decodingTrack(viewer.page, 40_000, 'before the move');

    // The namespace moves to an address in another network.
    const third = Number(link.nsAddr.split('.')[2]);
    const newAddr = `10.214.${third}.${2 + Math.floor(Math.random() * 250)}`;
    const movedAt = Date.now();
    ns.changeAddress(newAddr);
    t.diagnostic(`publisher moved from ${link.nsAddr} to ${newAddr}`);

    // The same track decodes again at the viewer.
    const deadline = movedAt + 60_000;
    let before = await videoByTrack(viewer.page);
    let resumed = null;
    let stalledSince = null;
    while (Date.now() < deadline) {
      await sleep(250);
      const now = await videoByTrack(viewer.page);
      const rising = (now[track] ?? 0) > (before[track] ?? 0);
      if (!rising && stalledSince === null) stalledSince = Date.now();
      if (rising && stalledSince !== null) {
        resumed = Date.now();
        break;
      }
      before = now;
    }
    const others = Object.keys(await videoByTrack(viewer.page)).filter((id) => id !== track);
    assert.ok(resumed, `the viewer did not decode track ${track} again within 60 s of the move; other tracks: ${JSON.stringify(others)}`);
    t.diagnostic(`video of ${track} stalled ${resumed - stalledSince} ms; resumed ${resumed - movedAt} ms after the move`);
    // Still one participant called Mover, with the same track.
    assert.equal(await viewer.page.locator('[data-testid="participant-item"][data-name="Mover"]').count(), 1);
    await decodingTrack(viewer.page, 10_000, 'after the move');
    failed = false;
  } finally {
    if (failed) {
      printProblems(people);
      if (server) console.error(`--- conclave server output ---\n${server.log()}`);
    }
    await Promise.all(people.map((p) => p.close()));
    await server?.stop();
    await ns.remove();
  }
});
