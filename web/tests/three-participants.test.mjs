// Three browsers in one room: each decodes both others' video, stream by
// stream, not just in total.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchParticipant, requireChromium } from './lib/browser.mjs';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { startServer } from './lib/server.mjs';

const DEADLINE_MS = 30_000;
const GAP_MS = 2_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** framesDecoded per inbound video stream, keyed by track identifier. */
async function decodedPerStream(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') out[s.trackIdentifier ?? s.id] = s.framesDecoded ?? 0;
      });
    }
    return out;
  });
}

test('three participants each decode both others', { timeout: 150_000 }, async () => {
  requireChromium();
  const server = await startServer();
  const people = [];
  let failed = true;
  try {
    const room = randomRoom();
    for (const name of ['Ann', 'Ben', 'Cat']) {
      const p = await launchParticipant(name.toLowerCase());
      people.push(p);
      await joinMeeting(p.page, server.url, { name, room });
    }
    for (const p of people) {
      for (const other of ['Ann', 'Ben', 'Cat']) {
        await participantItem(p.page, other).waitFor({ state: 'attached', timeout: 30_000 });
      }
    }
    for (const p of people) {
      const deadline = Date.now() + DEADLINE_MS;
      let ok = false;
      let before = await decodedPerStream(p.page);
      let after = before;
      while (!ok && Date.now() < deadline) {
        await sleep(GAP_MS);
        after = await decodedPerStream(p.page);
        const growing = Object.keys(after).filter((k) => after[k] > (before[k] ?? 0));
        ok = growing.length >= 2;
        before = after;
      }
      assert.ok(ok, `${p.label}: fewer than two remote video streams kept decoding: ${JSON.stringify(after)}`);
    }
    failed = false;
  } finally {
    if (failed) console.error(`--- conclave server output ---\n${server.log()}`);
    await Promise.all(people.map((p) => p.close()));
    await server.stop();
  }
});
