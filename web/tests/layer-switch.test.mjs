// Simulcast layers under a link that narrows during the call. A publisher
// and subscriber A are unshaped; subscriber B runs inside a network
// namespace the test makes, linked to the host by a veth pair. First every
// subscriber gets a high layer (as large as the app asks for); then the link toward B is
// limited with tbf and B must drop to a lower layer and keep decoding while
// A keeps the high layer. Measured and printed, not asserted: which layers
// the publisher sends, how long after the limit B's layer dropped, how long
// B's decoding stalled around the switch (freezes), how often and how long
// B went back up to the high layer while still limited (flapping), and
// whether B climbs back once the limit is lifted. The same runs a second time with
// end-to-end encryption on (a shared key in the meeting link): the server
// cannot read the payloads then, and must switch layers all the same.
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
import { sleep, videoInbound, videoOutbound } from './lib/video-stats.mjs';

const TRUST = { trustAnyCertificate: true };
const LIMIT_KBIT = 400;
const TEST_MS = 150_000;
/** How long B is watched under the limit after its first drop. */
const WATCH_MS = 15_000;

/** Samples `page` every `every` ms until `pred(sample)` holds with frames rising; fails after `ms`. */
async function eventually(t, page, pred, what, ms, every = 1_000) {
  const deadline = Date.now() + ms;
  let before = await videoInbound(page);
  let last = before;
  while (Date.now() < deadline) {
    await sleep(every);
    last = await videoInbound(page);
    if (last.decoded > before.decoded && pred(last)) return last;
    before = last;
  }
  assert.fail(`timed out after ${ms / 1000} s waiting for ${what}; last sample ${JSON.stringify(last)}`);
}

for (const e2ee of [false, true]) {
  const mode = e2ee ? ' (end-to-end encrypted)' : '';
  test(`a link that narrows mid-call moves its subscriber to a lower layer${mode}`, { timeout: TEST_MS }, async (t) => {
    requireChromium();
    requireNetworkTools();
    const started = Date.now();
    const link = randomLink('cqs');
    const ns = await makeNamespace(link.name, link.hostAddr, link.nsAddr);
    let server;
    const people = [];
    let failed = true;
    try {
      server = await startServer({ host: ns.hostAddr });
      const room = randomRoom();
      const pub = await launchParticipant('switch-pub', TRUST);
      people.push(pub);
      const a = await launchParticipant('switch-a', TRUST);
      people.push(a);
      const b = await launchParticipant('switch-b', { executablePath: ns.chromium, ...TRUST });
      people.push(b);
      const key = e2ee ? `layer-key-${Math.random().toString(36).slice(2)}` : undefined;
      await joinMeeting(pub.page, server.url, { name: 'Pub', room, key });
      // The subscribers only receive: the machine's CPU goes to the video under test.
      await joinReceiveOnly(a.page, server.url, { name: 'A', room, key });
      await joinReceiveOnly(b.page, server.url, { name: 'B', room, key });
      await participantItem(b.page, 'Pub').waitFor({ state: 'attached', timeout: 30_000 });
      for (const person of people) {
        const badge = person.page.getByTestId('e2ee-state');
        // The badge appears once the browser's encryption worker confirms.
        if (e2ee) await badge.waitFor({ state: 'visible', timeout: 15_000 });
        else assert.equal(await badge.count(), 0, `${person.label}: encryption shown in a meeting without a key`);
      }

      // The publisher's simulcast layers, once its encoder has ramped up.
      let layers = [];
      // Three when all go out; dynacast pauses a layer nobody asks for (the
      // app's tiles ask for 640 px), so two suffice after a few seconds.
      const layerStart = Date.now();
      while (Date.now() < layerStart + 20_000) {
        layers = await videoOutbound(pub.page);
        const sending = layers.filter((l) => l.width > 0).length;
        if (sending >= 3 || (sending >= 2 && Date.now() > layerStart + 6_000)) break;
        await sleep(1_000);
      }
      t.diagnostic(`publisher layers: ${JSON.stringify(layers)}`);
      const widths = [...new Set(layers.map((l) => l.width).filter((w) => w > 0))];
      assert.ok(widths.length >= 2, `the publisher sends fewer than two simulcast layers: ${JSON.stringify(layers)}`);
      const top = Math.max(...widths);

      // Unshaped, A gets a high layer (640 px or more; which one depends on the
      // size of the app's video tile, adaptive stream), and B the same.
      const aTop = await eventually(t, a.page, (s) => s.width >= Math.min(640, top), 'A to receive a high layer', 40_000);
      const bTop = await eventually(t, b.page, (s) => s.width >= aTop.width, 'B to receive the same layer before shaping', 30_000);
      const high = aTop.width;
      assert.ok(high > Math.min(...widths), 'A did not get above the lowest layer');
      t.diagnostic(`before shaping: A ${aTop.width}x${aTop.height}, B ${bTop.width}x${bTop.height}`);

      // Narrow the link toward B; sample finely to see the switch.
      const before = await videoInbound(b.page);
      const shapedAt = Date.now();
      ns.shapeDownlink(LIMIT_KBIT);
      let prev = before;
      let lastRise = shapedAt;
      let longestStall = 0;
      let dropped = null;
      // After the drop: switches back up to the high layer under the limit
      // (a link at its limit flaps between layers) and time spent there.
      let riseAgain = 0;
      let highAgainMs = 0;
      const path = [`${before.width}@0`];
      const dropDeadline = shapedAt + 60_000;
      while (Date.now() < dropDeadline) {
        await sleep(250);
        const now = await videoInbound(b.page);
        const at = Date.now();
        if (now.width !== prev.width) path.push(`${now.width}@${at - shapedAt}`);
        if (dropped && now.width >= high) {
          highAgainMs += 250;
          if (prev.width < high) riseAgain++;
        }
        if (now.decoded > prev.decoded) lastRise = at;
        else longestStall = Math.max(longestStall, at - lastRise);
        prev = now;
        if (!dropped && now.width > 0 && now.width < high) dropped = { at, sample: now };
        // Watch beyond the switch for the stall it causes and for flapping.
        if (dropped && at - dropped.at > WATCH_MS) break;
      }
      assert.ok(dropped, `B stayed at ${prev.width} px for 60 s after its link was limited to ${LIMIT_KBIT} kbit/s`);
      t.diagnostic(
        `limit ${LIMIT_KBIT} kbit/s: B dropped ${high} -> ${dropped.sample.width} px after ${dropped.at - shapedAt} ms; ` +
          `longest decoding stall ${longestStall} ms; freezes +${prev.freezes - before.freezes} ` +
          `(${(prev.freezeSeconds - before.freezeSeconds).toFixed(2)} s), PLIs +${prev.plis - before.plis}, ` +
          `NACKs +${prev.nacks - before.nacks}, lost +${prev.lost - before.lost}, keyframes +${prev.keyFrames - before.keyFrames}; ` +
          `in the ${WATCH_MS / 1000} s after the drop: ${riseAgain} switches back up, ${highAgainMs} ms at ${high} px; width@ms ${path.join(' ')}`,
      );

      // B keeps decoding the lower layer; A keeps the top layer.
      const bLow = await eventually(t, b.page, (s) => s.width > 0 && s.width < high, 'B to keep decoding a lower layer', 20_000);
      const aStill = await eventually(t, a.page, (s) => s.width >= high, 'A to keep the top layer', 20_000);
      assert.ok(aStill.width > bLow.width);

      // Lift the limit; report whether and when B climbs back (not asserted).
      ns.clearDownlink();
      const liftedAt = Date.now();
      const climbDeadline = Math.min(liftedAt + 40_000, started + TEST_MS - 15_000);
      let climbed = null;
      let s = bLow;
      while (Date.now() < climbDeadline) {
        await sleep(1_000);
        s = await videoInbound(b.page);
        if (s.width >= high) {
          climbed = Date.now() - liftedAt;
          break;
        }
      }
      t.diagnostic(
        climbed === null
          ? `limit lifted: B still at ${s.width} px after ${Math.round((Date.now() - liftedAt) / 1000)} s`
          : `limit lifted: B back at ${s.width} px after ${climbed} ms`,
      );
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
}
