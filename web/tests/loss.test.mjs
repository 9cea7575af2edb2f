// Video keeps decoding when the link from the server loses packets: lost
// packets are asked for again (NACK) and resent. The loss comes from a UDP
// relay on loopback between the server and the browsers.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchParticipant, requireChromium } from './lib/browser.mjs';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { startLossyRelay } from './lib/lossy-relay.mjs';
import { startServer } from './lib/server.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function inbound(page) {
  return page.evaluate(async () => {
    const out = { decoded: 0, nacks: 0, lost: 0 };
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          out.decoded += s.framesDecoded ?? 0;
          out.nacks += s.nackCount ?? 0;
          out.lost += s.packetsLost ?? 0;
        }
      });
    }
    return out;
  });
}

for (const percent of [10, 30]) {
  test(`video keeps decoding with ${percent}% loss toward the subscriber`, { timeout: 120_000 }, async (t) => {
    requireChromium();
    let server;
    let relay;
    const people = [];
    let failed = true;
    try {
      server = await startServer({ mediaBind: '127.0.0.2' });
      relay = await startLossyRelay({ port: server.udpPort });
      const room = randomRoom();
      const pub = await launchParticipant('publisher');
      people.push(pub);
      const sub = await launchParticipant('lossy');
      people.push(sub);
      await joinMeeting(pub.page, server.url, { name: 'Pub', room });
      await joinMeeting(sub.page, server.url, { name: 'Lossy', room });
      await participantItem(sub.page, 'Pub').waitFor({ state: 'attached', timeout: 30_000 });
      // Let video start cleanly, then lose packets.
      const deadline = Date.now() + 30_000;
      while ((await inbound(sub.page)).decoded < 20) {
        assert.ok(Date.now() < deadline, 'video never started');
        await sleep(500);
      }
      relay.setLoss(percent);
      const start = await inbound(sub.page);
      await sleep(10_000);
      const end = await inbound(sub.page);
      const fps = (end.decoded - start.decoded) / 10;
      t.diagnostic(
        `${percent}% loss: ${fps.toFixed(1)} frames/s decoded, NACKs ${start.nacks} -> ${end.nacks}, ` +
          `lost ${end.lost - start.lost}, relay ${JSON.stringify(relay.counts())}`,
      );
      assert.ok(end.decoded > start.decoded, `video stopped decoding at ${percent}% loss`);
      assert.ok(end.nacks > start.nacks, 'the subscriber sent no NACKs despite the loss');
      failed = false;
    } finally {
      if (failed && server) console.error(`--- conclave server output ---\n${server.log()}`);
      await Promise.all(people.map((p) => p.close()));
      relay?.close();
      await server?.stop();
    }
  });
}
