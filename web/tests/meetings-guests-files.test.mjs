// Guests and files: with guests allowed by the operator and the host (and
// a passcode added by editing the meeting), a person without an account
// asks to enter by name and passcode, waits, is admitted and
// is labelled as a guest for everyone. The host shares a file; the guest,
// who may not share files, downloads it. Once the host locks the meeting,
// nobody new gets in; a banned guest is put out and told so.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createAccount, startAccountServer, startSmtp } from './lib/accounts.mjs';
import { cspViolations, launchParticipant, requireChromium } from './lib/browser.mjs';
import { enterFromInvitation, joinFromPrejoin, PASSWORD, planMeeting, report, rosterEntry, signIn } from './lib/meetings.mjs';

const NOTES = 'Agenda\n1. Keys\n2. Logs\n';

test('a guest is let in and labelled, downloads a shared file; a locked meeting keeps others out; a ban puts her out', { timeout: 240_000 }, async () => {
  requireChromium();
  const smtp = await startSmtp();
  const server = await startAccountServer({ smtpPort: smtp.port, env: { CONCLAVE_MEETINGS_ALLOW_GUESTS: 'true' } });
  const people = [];
  let failed = true;
  try {
    await createAccount(server, smtp, { email: 'ada@example.org', name: 'Ada Lovelace', password: PASSWORD });
    const ada = await launchParticipant('ada');
    const eve = await launchParticipant('eve');
    people.push(ada, eve);

    await signIn(ada.page, server.url, 'ada@example.org');
    await ada.page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    const id = await planMeeting(ada.page, server.url, { title: 'Open house', guests: true });
    // Edited afterwards: a passcode.
    const item = ada.page.locator(`[data-testid="meeting-item"][data-meeting="${id}"]`);
    await item.getByTestId('meeting-edit').click();
    await ada.page.getByTestId('meeting-form-title').waitFor({ timeout: 10_000 });
    assert.equal(await ada.page.getByTestId('meeting-guests').isChecked(), true, 'the form shows the saved settings');
    await ada.page.getByTestId('meeting-passcode').fill('4711-mango');
    await ada.page.getByTestId('meeting-save').click();
    await item.waitFor({ timeout: 10_000 });
    assert.equal(await enterFromInvitation(ada.page, server.url, id), 'prejoin');
    await joinFromPrejoin(ada.page, 'Ada');

    // Without an account: the invitation asks for a name, and the guest waits.
    await eve.page.goto(`${server.url}/m/${id}`);
    await eve.page.getByTestId('guest-name').fill('Eve');
    // The passcode is asked; a wrong one is refused.
    await eve.page.getByTestId('enter-passcode').fill('4711-apple');
    await eve.page.getByTestId('enter-button').click();
    await eve.page.getByTestId('enter-error').waitFor({ timeout: 15_000 });
    await eve.page.getByTestId('enter-passcode').fill('4711-mango');
    await eve.page.getByTestId('enter-button').click();
    await eve.page.locator('[data-testid="lobby-state"][data-state="waiting"]').waitFor({ timeout: 15_000 });
    const waiting = ada.page.getByTestId('lobby-item').filter({ hasText: 'Eve' });
    await waiting.waitFor({ timeout: 30_000 });
    assert.match(await waiting.innerText(), /guest/);
    await waiting.getByTestId('lobby-admit').click();
    await joinFromPrejoin(eve.page, 'Eve');

    // Everyone sees the guest labelled as one.
    const eveAtAda = rosterEntry(ada.page, 'Eve (guest)');
    await eveAtAda.locator('[data-label="guest"]').waitFor({ timeout: 30_000 });
    await rosterEntry(eve.page, 'Eve (guest)').locator('[data-label="guest"]').waitFor({ timeout: 10_000 });

    // Files are for hosts here: the guest cannot share, the host can.
    assert.equal(await eve.page.getByTestId('file-input').isDisabled(), true);
    await ada.page.getByTestId('file-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(NOTES) });
    await ada.page.getByTestId('file-upload').click();
    const shared = eve.page.getByTestId('file-item').filter({ hasText: 'notes.txt' });
    await shared.waitFor({ timeout: 20_000 });
    const [download] = await Promise.all([eve.page.waitForEvent('download', { timeout: 20_000 }), shared.getByTestId('file-download').click()]);
    assert.equal(download.suggestedFilename(), 'notes.txt');
    const stream = await download.createReadStream();
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(Buffer.concat(chunks).toString(), NOTES);

    // Locked: another guest is turned away with the reason.
    await ada.page.getByTestId('meeting-lock').click();
    await ada.page.locator('[data-testid="meeting-lock"][data-locked="true"]').waitFor({ timeout: 10_000 });
    const other = await eve.context.newPage();
    await other.goto(`${server.url}/m/${id}`);
    await other.getByTestId('guest-name').fill('Mallory');
    await other.getByTestId('enter-passcode').fill('4711-mango');
    await other.getByTestId('enter-button').click();
    await other.getByTestId('enter-error').getByText(/locked/i).waitFor({ timeout: 15_000 });
    await other.close();
    assert.equal(await ada.page.getByTestId('lobby-item').count(), 0, 'nobody waits');

    // The host bans the guest: she is out, and told why.
    await eveAtAda.getByTestId('participant-actions').click();
    await eveAtAda.getByTestId('action-ban').click();
    await eve.page.getByTestId('left-screen').waitFor({ timeout: 20_000 });
    assert.match(await eve.page.getByTestId('left-reason').innerText(), /removed/);
    await eveAtAda.waitFor({ state: 'detached', timeout: 20_000 });

    for (const who of people) assert.deepEqual(await cspViolations(who.page), [], `${who.label}: no CSP violations`);
    failed = false;
  } finally {
    if (failed) report(server, people);
    await Promise.all(people.map((p) => p.close()));
    await server.stop();
    await smtp.stop();
  }
});
