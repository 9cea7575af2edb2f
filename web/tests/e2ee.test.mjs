// End-to-end encryption through the SFU: participants open the web app with
// a meeting link that carries a shared key (`#key=…`, which the browser
// never sends to the server) and must decode each other's video, so
// forwarding works with encrypted payloads. A participant whose link has a
// different key receives the packets but decodes nothing, which shows the
// media really was encrypted end to end.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchParticipant, nonLoopback, printProblems, requireChromium } from './lib/browser.mjs';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { startServer } from './lib/server.mjs';
import { sleep, videoInbound } from './lib/video-stats.mjs';

test('video is forwarded and decoded with end-to-end encryption on', { timeout: 150_000 }, async (t) => {
  requireChromium();
  let server;
  const people = [];
  let failed = true;
  try {
    server = await startServer();
    const room = randomRoom();
    const key = `conclave-test-key-${Math.random().toString(36).slice(2)}`;

    const alice = await launchParticipant('e2ee-alice');
    people.push(alice);
    const bob = await launchParticipant('e2ee-bob');
    people.push(bob);
    await joinMeeting(alice.page, server.url, { name: 'Alice', room, key });
    await joinMeeting(bob.page, server.url, { name: 'Bob', room, key });
    for (const person of [alice, bob]) {
      await person.page.getByTestId('e2ee-state').waitFor({ timeout: 10_000 });
      // The key does not stay in the address bar.
      assert.ok(!person.page.url().includes(key), `${person.label}: the key is still in the address ${person.page.url()}`);
    }
    await participantItem(alice.page, 'Bob').waitFor({ state: 'attached', timeout: 30_000 });

    // Both decode the other's (encrypted) video: frames decoded keep rising.
    for (const person of [alice, bob]) {
      const deadline = Date.now() + 45_000;
      let before = await videoInbound(person.page);
      let rises = 0;
      while (rises < 3) {
        assert.ok(Date.now() < deadline, `${person.label} did not keep decoding video: ${JSON.stringify(before)}`);
        await sleep(1_500);
        const now = await videoInbound(person.page);
        if (now.decoded > before.decoded && now.width > 0) rises++;
        before = now;
      }
      t.diagnostic(`${person.label}: ${before.decoded} frames decoded at ${before.width}x${before.height}`);
    }

    // A third participant with another key receives the packets but cannot
    // decode the frames, and is told so.
    const eve = await launchParticipant('e2ee-wrong-key');
    people.push(eve);
    await joinMeeting(eve.page, server.url, { name: 'Eve', room, key: `${key}-wrong` });
    const deadline = Date.now() + 30_000;
    let eveStats = await videoInbound(eve.page);
    while (eveStats.packets < 200) {
      assert.ok(Date.now() < deadline, `the wrong-key participant received no video: ${JSON.stringify(eveStats)}`);
      await sleep(1_000);
      eveStats = await videoInbound(eve.page);
    }
    await sleep(3_000);
    eveStats = await videoInbound(eve.page);
    t.diagnostic(`wrong key: ${JSON.stringify(eveStats)}`);
    assert.ok(eveStats.decoded <= 2, `a participant with the wrong key decoded ${eveStats.decoded} frames`);
    await eve.page.getByText('could not be decrypted').first().waitFor({ timeout: 10_000 });
    // Everyone talked to loopback only.
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
