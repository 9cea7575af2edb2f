// Moderation through the web app: a host mutes a participant's microphone
// and everyone sees it muted; the host asks them to unmute; the request is
// shown and nothing is switched on until the participant decides ("Not
// now" keeps it off, "Unmute" turns it on). A raised hand is seen by the
// host, who lowers it; screen sharing is unavailable until the host allows
// it; chat names the sender the server states and stops when the host
// takes the right away; a co-host gets the lobby; the host ends the meeting.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createAccount, startAccountServer, startSmtp } from './lib/accounts.mjs';
import { cspViolations, launchParticipant, requireChromium } from './lib/browser.mjs';
import { enterFromInvitation, joinFromPrejoin, PASSWORD, planMeeting, recordChimes, report, rosterEntry, signIn } from './lib/meetings.mjs';

test('a host mutes a participant, asks to unmute, and the participant decides', { timeout: 240_000 }, async () => {
  requireChromium();
  const smtp = await startSmtp();
  const server = await startAccountServer({ smtpPort: smtp.port });
  const people = [];
  let failed = true;
  try {
    await createAccount(server, smtp, { email: 'ada@example.org', name: 'Ada Lovelace', password: PASSWORD });
    await createAccount(server, smtp, { email: 'bob@example.org', name: 'Bob Kahn', password: PASSWORD });
    const ada = await launchParticipant('ada');
    const bob = await launchParticipant('bob');
    people.push(ada, bob);
    for (const who of people) await recordChimes(who.context);

    await signIn(ada.page, server.url, 'ada@example.org');
    await ada.page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    // Invitees enter without waiting in this one.
    const id = await planMeeting(ada.page, server.url, { title: 'Stand-up', invitees: [{ value: 'bob@example.org' }], lobby: 'uninvited' });
    assert.equal(await enterFromInvitation(ada.page, server.url, id), 'prejoin');
    await joinFromPrejoin(ada.page, 'Ada');

    await signIn(bob.page, server.url, 'bob@example.org');
    await bob.page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    assert.equal(await enterFromInvitation(bob.page, server.url, id), 'prejoin');
    await joinFromPrejoin(bob.page, 'Bob');

    const bobAtAda = rosterEntry(ada.page, 'Bob Kahn');
    const bobAtBob = rosterEntry(bob.page, 'Bob Kahn');
    await bobAtAda.and(ada.page.locator('[data-mic="on"]')).waitFor({ timeout: 30_000 });
    await bobAtBob.and(bob.page.locator('[data-mic="on"]')).waitFor({ timeout: 30_000 });

    // The host mutes Bob's microphone: both see it off, and Bob's own button says so.
    await bobAtAda.getByTestId('participant-actions').click();
    await bobAtAda.getByTestId('action-mute').click();
    await bobAtAda.and(ada.page.locator('[data-mic="off"]')).waitFor({ timeout: 20_000 });
    await bobAtBob.and(bob.page.locator('[data-mic="off"]')).waitFor({ timeout: 20_000 });
    await bob.page.getByTestId('mic-toggle').and(bob.page.locator('[aria-pressed="true"]')).waitFor({ timeout: 10_000 });

    // The host asks Bob to unmute; Bob sees who asks, and his microphone stays off.
    await bobAtAda.getByTestId('participant-actions').click();
    await bobAtAda.getByTestId('action-ask-unmute').click();
    const prompt = bob.page.locator('[data-testid="ask-prompt"][data-source="microphone"]');
    await prompt.waitFor({ timeout: 20_000 });
    assert.match(await prompt.getByTestId('ask-text').innerText(), /Ada Lovelace asks you to unmute your microphone/);
    assert.equal(await bobAtBob.getAttribute('data-mic'), 'off');

    // "Not now": the prompt goes and the microphone stays off. Bob then
    // raises his hand: once the host sees the hand, anything Bob's page did
    // before it has reached the host too, and the microphone is still off.
    await prompt.getByTestId('ask-decline').click();
    await prompt.waitFor({ state: 'detached', timeout: 5_000 });
    await bob.page.getByTestId('hand-toggle').click();
    await bobAtAda.and(ada.page.locator('[data-hand="up"]')).waitFor({ timeout: 20_000 });
    assert.equal(await bobAtBob.getAttribute('data-mic'), 'off');
    assert.equal(await bobAtAda.getAttribute('data-mic'), 'off');

    // The host lowers Bob's hand.
    await bobAtAda.getByTestId('participant-actions').click();
    await bobAtAda.getByTestId('action-lower-hand').click();
    await bobAtBob.and(bob.page.locator('[data-hand="down"]')).waitFor({ timeout: 20_000 });
    await bob.page.getByTestId('hand-toggle').and(bob.page.locator('[aria-pressed="false"]')).waitFor({ timeout: 10_000 });

    // Asked again, Bob unmutes: everyone sees his microphone on.
    await bobAtAda.getByTestId('participant-actions').click();
    await bobAtAda.getByTestId('action-ask-unmute').click();
    await prompt.waitFor({ timeout: 20_000 });
    await prompt.getByTestId('ask-accept').click();
    await bobAtBob.and(bob.page.locator('[data-mic="on"]')).waitFor({ timeout: 20_000 });
    await bobAtAda.and(ada.page.locator('[data-mic="on"]')).waitFor({ timeout: 20_000 });

    // Screen sharing is for hosts by default: Bob's button says why it is
    // unavailable, until the host allows him.
    const share = bob.page.getByTestId('screen-share-toggle');
    assert.equal(await share.getAttribute('aria-disabled'), 'true');
    assert.match(await bob.page.getByTestId('controls-hint').innerText(), /screen/);
    await bobAtAda.getByTestId('participant-actions').click();
    await bobAtAda.getByTestId('action-grant-screen').click();
    await share.and(bob.page.locator('[aria-disabled="false"]')).waitFor({ timeout: 20_000 });

    // Chat: the sender shown is the one the server names.
    await bob.page.getByTestId('chat-input').fill('Ready when you are.');
    await bob.page.getByTestId('chat-send').click();
    const message = ada.page.getByTestId('chat-message').filter({ hasText: 'Ready when you are.' });
    await message.waitFor({ timeout: 20_000 });
    assert.match(await message.innerText(), /Bob Kahn/);
    assert.equal(await message.getAttribute('data-identity'), await bobAtAda.getAttribute('data-identity'));

    // The host takes the chat right away from everyone but the hosts: Bob's chat says so.
    await ada.page.getByTestId('room-right-chat').selectOption('hosts');
    await bob.page.locator('[data-testid="chat-input"]:disabled').waitFor({ timeout: 20_000 });
    assert.match(await bob.page.getByTestId('chat-hint').innerText(), /not allowed/);

    // Made co-host, Bob is labelled so and gets the lobby.
    await bobAtAda.getByTestId('participant-actions').click();
    await bobAtAda.getByTestId('action-make-cohost').click();
    await bobAtAda.locator('[data-label="co-host"]').waitFor({ timeout: 20_000 });
    await bob.page.getByTestId('lobby-panel').waitFor({ timeout: 20_000 });
    await bob.page.locator('[data-testid="chat-input"]:enabled').waitFor({ timeout: 20_000 });

    // The host ends the meeting for everyone.
    await ada.page.getByTestId('meeting-end').click();
    await ada.page.getByTestId('meeting-end-confirm').click();
    await bob.page.getByTestId('left-screen').waitFor({ timeout: 20_000 });
    assert.match(await bob.page.getByTestId('left-reason').innerText(), /ended/);
    await ada.page.getByTestId('left-screen').waitFor({ timeout: 20_000 });

    for (const who of people) assert.deepEqual(await cspViolations(who.page), [], `${who.label}: no CSP violations`);
    failed = false;
  } finally {
    if (failed) report(server, people);
    await Promise.all(people.map((p) => p.close()));
    await server.stop();
    await smtp.stop();
  }
});
