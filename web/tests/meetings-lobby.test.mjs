// A meeting through the web app: the owner plans it at /meetings and
// enters; an invited user first meets the private-meeting page, signs in,
// comes back, and waits in the lobby; the owner hears and sees that
// someone waits and admits them; both see each other. Then join and leave
// notices: a third invitee joins and leaves, and the others are told.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createAccount, startAccountServer, startSmtp } from './lib/accounts.mjs';
import { cspViolations, launchParticipant, nonLoopback, requireChromium } from './lib/browser.mjs';
import { chimes, enterFromInvitation, joinFromPrejoin, PASSWORD, planMeeting, recordChimes, report, rosterEntry, signIn } from './lib/meetings.mjs';

let smtp;
let server;
const people = [];
let ada;
let grace;
let meetingId;
let failed = false;

before(async () => {
  requireChromium();
  smtp = await startSmtp();
  server = await startAccountServer({ smtpPort: smtp.port });
  await createAccount(server, smtp, { email: 'ada@example.org', name: 'Ada Lovelace', password: PASSWORD });
  await createAccount(server, smtp, { email: 'grace@example.org', name: 'Grace Hopper', password: PASSWORD });
  await createAccount(server, smtp, { email: 'alan@example.org', name: 'Alan Turing', password: PASSWORD });
  ada = await launchParticipant('ada');
  grace = await launchParticipant('grace');
  people.push(ada, grace);
  for (const who of people) await recordChimes(who.context);
});

after(async () => {
  if (failed) report(server, people);
  await Promise.all(people.map((p) => p.close()));
  await server?.stop();
  await smtp?.stop();
});

test('lobby: an invitee waits, the owner is told and admits, both see each other', { timeout: 180_000 }, async () => {
  try {
    // The owner plans the meeting through the UI, from the landing page.
    await ada.page.goto(`${server.url}/`);
    await ada.page.getByTestId('meetings-link').click();
    await ada.page.getByTestId('meetings-signin').click();
    await signIn(ada.page, server.url, 'ada@example.org', { open: false });
    await ada.page.getByTestId('meetings-title').waitFor({ timeout: 15_000 });
    meetingId = await planMeeting(ada.page, server.url, {
      title: 'Security review',
      invitees: [
        { value: 'grace@example.org', role: 'participant' },
        { value: 'alan@example.org', role: 'participant' },
      ],
    });

    // The owner enters directly and joins the room.
    assert.equal(await enterFromInvitation(ada.page, server.url, meetingId), 'prejoin');
    await joinFromPrejoin(ada.page, 'Ada');
    await ada.page.getByTestId('lobby-panel').waitFor({ timeout: 15_000 });
    await ada.page.getByTestId('lobby-empty').waitFor();
    await rosterEntry(ada.page, 'Ada Lovelace').locator('[data-label="owner"]').waitFor({ timeout: 15_000 });

    // Not signed in, the invitee sees a private meeting and the service's address.
    await grace.page.goto(`${server.url}/m/${meetingId}`);
    await grace.page.getByTestId('invite-private').waitFor({ timeout: 15_000 });
    assert.equal(await grace.page.getByTestId('service-host').innerText(), new URL(server.url).host);
    // Signing in leads back to the invitation, which names the owner and the service.
    await grace.page.getByTestId('invite-signin').click();
    await signIn(grace.page, server.url, 'grace@example.org', { open: false });
    await grace.page.getByTestId('invite-page').waitFor({ timeout: 15_000 });
    assert.equal(new URL(grace.page.url()).pathname, `/m/${meetingId}`);
    assert.match(await grace.page.getByTestId('invite-owner').innerText(), /Ada Lovelace/);
    assert.equal(await grace.page.getByTestId('service-host').innerText(), new URL(server.url).host);
    assert.match(await grace.page.locator('h1').innerText(), /Security review/);

    // She waits in the lobby.
    const chimesBefore = await chimes(ada.page);
    await grace.page.getByTestId('enter-button').click();
    await grace.page.locator('[data-testid="lobby-state"][data-state="waiting"]').waitFor({ timeout: 15_000 });

    // The owner sees her in the lobby, with a notice and a chime.
    const waiting = ada.page.locator('[data-testid="lobby-item"][data-name="Grace Hopper"]');
    await waiting.waitFor({ timeout: 30_000 });
    await ada.page.getByTestId('notice').filter({ hasText: 'Grace Hopper is waiting in the lobby' }).first().waitFor({ state: 'attached', timeout: 10_000 });
    const chimesAfter = await chimes(ada.page);
    assert.ok(chimesAfter.kinds.slice(chimesBefore.kinds.length).includes('lobby'), `a lobby chime: ${JSON.stringify(chimesAfter)}`);
    assert.ok(chimesAfter.tones > chimesBefore.tones, 'the chime started WebAudio tones');
    assert.match(await waiting.innerText(), /example\.org/, 'the verified domain is shown');
    // Still waiting: nobody is let in by being noticed.
    assert.equal(await grace.page.getByTestId('lobby-state').getAttribute('data-state'), 'waiting');

    await waiting.getByTestId('lobby-admit').click();
    await waiting.waitFor({ state: 'detached', timeout: 15_000 });

    // Her page leaves the lobby for the pre-join screen; she joins.
    await joinFromPrejoin(grace.page, 'Grace');

    // Both see each other, the owner labelled as such.
    await rosterEntry(ada.page, 'Grace Hopper').waitFor({ timeout: 30_000 });
    await rosterEntry(grace.page, 'Ada Lovelace').waitFor({ timeout: 30_000 });
    await rosterEntry(grace.page, 'Ada Lovelace').locator('[data-label="owner"]').waitFor({ timeout: 10_000 });
    assert.equal(await ada.page.getByTestId('video-tile').count(), 2);
    assert.equal(await grace.page.getByTestId('video-tile').count(), 2);
    // A participant has no lobby or meeting controls.
    assert.equal(await grace.page.getByTestId('lobby-panel').isVisible(), false);
    assert.equal(await grace.page.getByTestId('meeting-panel').isVisible(), false);

    for (const who of people) {
      assert.deepEqual(await cspViolations(who.page), [], `${who.label}: no CSP violations`);
      assert.deepEqual(nonLoopback(who.requests), [], `${who.label}: every request stays on loopback`);
    }
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('join and leave: the others see a notice and hear a chime', { timeout: 150_000 }, async () => {
  assert.ok(meetingId, 'the lobby test made the meeting');
  const alan = await launchParticipant('alan');
  people.push(alan);
  try {
    await recordChimes(alan.context);
    await signIn(alan.page, server.url, 'alan@example.org');
    await alan.page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    const before = await Promise.all([chimes(ada.page), chimes(grace.page)]);
    assert.equal(await enterFromInvitation(alan.page, server.url, meetingId), 'lobby');
    const waiting = ada.page.locator('[data-testid="lobby-item"][data-name="Alan Turing"]');
    await waiting.getByTestId('lobby-admit').click({ timeout: 30_000 });
    await joinFromPrejoin(alan.page, 'Alan');

    for (const [i, who] of [ada, grace].entries()) {
      await who.page.getByTestId('notice').filter({ hasText: 'Alan Turing joined' }).first().waitFor({ state: 'attached', timeout: 30_000 });
      await rosterEntry(who.page, 'Alan Turing').waitFor({ timeout: 10_000 });
      const now = await chimes(who.page);
      assert.ok(now.kinds.slice(before[i].kinds.length).includes('join'), `${who.label} heard a join chime: ${JSON.stringify(now.kinds)}`);
    }

    const mid = await Promise.all([chimes(ada.page), chimes(grace.page)]);
    await alan.page.getByTestId('leave-button').click();
    await alan.page.getByTestId('left-screen').waitFor({ timeout: 15_000 });
    for (const [i, who] of [ada, grace].entries()) {
      await who.page.getByTestId('notice').filter({ hasText: 'Alan Turing left' }).first().waitFor({ state: 'attached', timeout: 30_000 });
      await rosterEntry(who.page, 'Alan Turing').waitFor({ state: 'detached', timeout: 10_000 });
      const now = await chimes(who.page);
      assert.ok(now.kinds.slice(mid[i].kinds.length).includes('leave'), `${who.label} heard a leave chime: ${JSON.stringify(now.kinds)}`);
    }
  } catch (err) {
    failed = true;
    throw err;
  }
});
