// Two browsers join the same room through the web client and must receive
// each other's audio and video; then one leaves and the other sees it go.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cspViolations, inboundStats, launchParticipant, nonLoopback, printProblems, requireChromium } from './lib/browser.mjs';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { startServer } from './lib/server.mjs';

const MEDIA_DEADLINE_MS = 30_000;
const SAMPLE_GAP_MS = 2_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until every inbound counter has grown between two samples. */
async function expectMediaFlowing(who) {
  const deadline = Date.now() + MEDIA_DEADLINE_MS;
  let before = await inboundStats(who.page);
  let after = before;
  while (Date.now() < deadline) {
    await sleep(SAMPLE_GAP_MS);
    after = await inboundStats(who.page);
    const growing =
      after.audioPackets > before.audioPackets &&
      after.videoPackets > before.videoPackets &&
      after.framesDecoded > before.framesDecoded;
    if (growing) return { before, after };
    before = after;
  }
  assert.fail(
    `${who.label}: inbound media did not keep flowing within ${MEDIA_DEADLINE_MS / 1000} s; ` +
      `last samples ${JSON.stringify(before)} -> ${JSON.stringify(after)}`,
  );
}

test('two participants see and hear each other, then one leaves', { timeout: 120_000 }, async (t) => {
  requireChromium();
  const server = await startServer();
  const participants = [];
  let failed = true;
  try {
    const room = randomRoom();
    const alice = await launchParticipant('alice');
    participants.push(alice);
    const bob = await launchParticipant('bob');
    participants.push(bob);

    await joinMeeting(alice.page, server.url, { name: 'Alice', room });
    await joinMeeting(bob.page, server.url, { name: 'Bob', room });

    // Each lists the other (and itself).
    await participantItem(alice.page, 'Bob').waitFor({ state: 'attached', timeout: 30_000 });
    await participantItem(bob.page, 'Alice').waitFor({ state: 'attached', timeout: 30_000 });
    await participantItem(alice.page, 'Alice').waitFor({ state: 'attached', timeout: 5_000 });
    assert.equal(await alice.page.getByTestId('video-tile').count(), 2, 'Alice sees two tiles');

    for (const who of [alice, bob]) {
      const { before, after } = await expectMediaFlowing(who);
      t.diagnostic(`${who.label}: inbound ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
    }
    // livekit-client sends Opus with RFC 2198 redundancy when the server asks
    // for it (Chromium's statistics name only the primary codec, so the
    // server's count is what shows it).
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const red = Number(/^conclave_red_packets_in_total (\d+)$/m.exec(metrics)?.[1] ?? 'NaN');
    t.diagnostic(`audio packets received in RED: ${red}`);
    assert.ok(red > 0, `the server received no audio in RED: ${metrics}`);

    // The fake microphones beep: the server announces speakers, and each page
    // highlights the other's tile while it sounds.
    for (const [who, otherName] of [[alice, 'Bob'], [bob, 'Alice']]) {
      const otherIdentity = await participantItem(who.page, otherName).getAttribute('data-identity');
      assert.ok(otherIdentity, `${who.label} knows ${otherName}'s identity`);
      await who.page
        .locator(`[data-testid="video-tile"][data-identity="${otherIdentity}"].speaking`)
        .waitFor({ state: 'attached', timeout: 20_000 });
    }

    // Muting and unmuting are shown to the other side.
    const aliceAtBob = participantItem(bob.page, 'Alice');
    for (const [button, attribute] of [['mic-toggle', 'data-mic'], ['camera-toggle', 'data-camera']]) {
      await alice.page.getByTestId(button).click();
      await bob.page.locator(`[data-testid="participant-item"][data-name="Alice"][${attribute}="off"]`).waitFor({ timeout: 15_000 });
      await alice.page.getByTestId(button).click();
      await bob.page.locator(`[data-testid="participant-item"][data-name="Alice"][${attribute}="on"]`).waitFor({ timeout: 15_000 });
    }
    assert.equal(await aliceAtBob.count(), 1);

    // Bob leaves: Alice sees him go, Bob sees the after-meeting screen.
    await bob.page.getByTestId('leave-button').click();
    await bob.page.getByTestId('left-screen').waitFor({ timeout: 15_000 });
    await participantItem(alice.page, 'Bob').waitFor({ state: 'detached', timeout: 30_000 });
    await alice.page.getByTestId('notice').filter({ hasText: 'Bob left' }).first().waitFor({ state: 'attached', timeout: 15_000 });
    assert.equal(await alice.page.locator('[data-testid="video-tile"]').count(), 1, 'Alice sees only herself');

    for (const who of participants) {
      assert.deepEqual(await cspViolations(who.page), [], `${who.label}: no CSP violations`);
      assert.deepEqual(nonLoopback(who.requests), [], `${who.label}: every request stays on loopback`);
    }
    failed = false;
  } finally {
    if (failed) {
      printProblems(participants);
      console.error(`--- conclave server output ---\n${server.log()}`);
    }
    await Promise.all(participants.map((p) => p.close()));
    await server.stop();
  }
});
