// Three participants; one receives through a narrow link in its own network
// namespace. It must get a lower simulcast layer than the others while both
// keep decoding.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchParticipant, requireChromium } from './lib/browser.mjs';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { makeNamespace } from './lib/netns.mjs';
import { startServer } from './lib/server.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Beyond loopback the server speaks HTTPS with a certificate made at its
// first start; the test browsers accept it because the test trusts the
// server it started itself.
const TRUST = { trustAnyCertificate: true };

/** Widest inbound video frame and total frames decoded. */
async function videoIn(page) {
  return page.evaluate(async () => {
    const out = { width: 0, decoded: 0 };
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          out.width = Math.max(out.width, s.frameWidth ?? 0);
          out.decoded += s.framesDecoded ?? 0;
        }
      });
    }
    return out;
  });
}

/** Waits until `pred(sample)` holds while frames keep being decoded. */
async function eventually(page, pred, what, t, ms = 45_000) {
  const deadline = Date.now() + ms;
  let before = await videoIn(page);
  while (Date.now() < deadline) {
    await sleep(2_000);
    const now = await videoIn(page);
    t.diagnostic(`${what}: ${JSON.stringify(now)}`);
    if (now.decoded > before.decoded && pred(now)) return now;
    before = now;
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('a subscriber on a narrow link gets a lower layer, the others the high one', { timeout: 150_000 }, async (t) => {
  requireChromium();
  const tag = Math.random().toString(36).slice(2, 7);
  const ns = await makeNamespace(`cnc${tag}`, '10.213.77.1', '10.213.77.2');
  let server;
  const people = [];
  let failed = true;
  try {
    server = await startServer({ host: ns.hostAddr });
    const room = randomRoom();
    const pub = await launchParticipant('publisher', TRUST);
    people.push(pub);
    const wide = await launchParticipant('wide', TRUST);
    people.push(wide);
    const narrow = await launchParticipant('narrow', { executablePath: ns.chromium, ...TRUST });
    people.push(narrow);
    await joinMeeting(pub.page, server.url, { name: 'Pub', room });
    await joinMeeting(wide.page, server.url, { name: 'Wide', room });
    await joinMeeting(narrow.page, server.url, { name: 'Narrow', room });
    await participantItem(narrow.page, 'Pub').waitFor({ state: 'attached', timeout: 30_000 });

    // Unshaped, everyone gets the publisher's best layer.
    const full = await eventually(wide.page, (s) => s.width >= 640, 'wide receives the high layer', t);
    await eventually(narrow.page, (s) => s.width >= full.width, 'narrow receives the high layer before shaping', t);

    const shapedAt = Date.now();
    ns.shapeDownlink(350);
    const low = await eventually(narrow.page, (s) => s.width > 0 && s.width < full.width, 'narrow drops to a lower layer', t, 60_000);
    t.diagnostic(`layer dropped ${Date.now() - shapedAt} ms after the link narrowed, ${full.width} -> ${low.width} px`);
    const still = await eventually(wide.page, (s) => s.width >= full.width, 'wide keeps the high layer', t);
    assert.ok(still.width > low.width);
    failed = false;
  } finally {
    if (failed && server) console.error(`--- conclave server output ---\n${server.log()}`);
    await Promise.all(people.map((p) => p.close()));
    await server?.stop();
    await ns.remove();
  }
});
