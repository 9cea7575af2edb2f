// Accounts in the browser: register, read the confirmation mail from a
// real SMTP server, confirm, sign in, enrol TOTP, sign out, sign in with
// TOTP; the session cookie's attributes; a reused confirmation link.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { linkIn, startAccountServer, startSmtp, totpCode } from './lib/accounts.mjs';
import { cspViolations, launchParticipant, nonLoopback, requireChromium } from './lib/browser.mjs';

const PASSWORD = 'violet kestrel orbits the quiet meadow';

let smtp;
let server;
let browser;
let failed = false;

before(async () => {
  requireChromium();
  smtp = await startSmtp();
  server = await startAccountServer({ smtpPort: smtp.port });
  browser = await launchParticipant('account');
});

after(async () => {
  if (failed && server) console.error(`--- conclave server output ---\n${server.log()}`);
  await browser?.close();
  await server?.stop();
  await smtp?.stop();
});

async function signIn(page, email) {
  await page.goto(`${server.url}/account/sign-in`);
  await page.getByTestId('signin-email').fill(email);
  await page.getByTestId('signin-password').fill(PASSWORD);
  await page.getByTestId('signin-submit').click();
}

test('register, confirm by mail, sign in, enrol TOTP, sign in with TOTP', { timeout: 120_000 }, async () => {
  try {
    const { page, context, requests } = browser;
    const email = 'ada@example.org';

    await page.goto(`${server.url}/account/register`);
    await page.getByTestId('register-name').fill('Ada Lovelace');
    await page.getByTestId('register-email').fill(email);
    // A weak password is refused with the reason.
    await page.getByTestId('register-password').fill('password1234');
    await page.getByTestId('register-submit').click();
    await assert.doesNotReject(page.getByTestId('register-error').getByText(/common/).waitFor({ timeout: 10_000 }));
    await page.getByTestId('register-password').fill(PASSWORD);
    await page.getByTestId('register-submit').click();
    await page.getByTestId('register-done').waitFor({ timeout: 15_000 });

    // Not usable before the address is confirmed.
    await signIn(page, email);
    await page.getByTestId('signin-error').getByText(/confirm/i).waitFor({ timeout: 10_000 });

    // The mail arrives at the real SMTP server; its link confirms once.
    const mail = await smtp.waitForMail(email);
    assert.match(mail.subject, /confirm/i);
    const link = linkIn(mail);
    assert.ok(link.startsWith(`${server.url}/account/confirm#token=`), link);
    await page.goto(link);
    await page.getByTestId('confirm-done').waitFor({ timeout: 10_000 });
    // The token was in the fragment: it never reached the server in a URL, and the page dropped it.
    assert.equal(new URL(page.url()).hash, '');
    await page.goto(link);
    await page.getByTestId('confirm-failed').waitFor({ timeout: 10_000 });

    await signIn(page, email);
    await page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    assert.equal(await page.getByTestId('account-email').textContent(), email);

    const cookies = await context.cookies(server.url);
    const session = cookies.find((c) => c.name === '__Host-conclave_session');
    assert.ok(session, `the browser kept the session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
    assert.equal(session.secure, true);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(session.path, '/');
    // HttpOnly: scripts cannot read it.
    assert.equal(await page.evaluate(() => document.cookie.includes('conclave_session')), false);

    // Enrol TOTP.
    await page.getByTestId('totp-setup').click();
    const secret = (await page.getByTestId('totp-secret').textContent()).trim();
    const enrolledAt = Date.now() / 1000;
    await page.getByTestId('totp-confirm-code').fill(totpCode(secret, enrolledAt));
    await page.getByTestId('totp-confirm-submit').click();
    await page.getByTestId('recovery-codes').waitFor({ timeout: 10_000 });
    assert.equal(await page.getByTestId('recovery-codes').locator('li').count(), 10);
    await page.getByTestId('totp-state').getByText('set up.').waitFor();

    // Sign out; the old cookie no longer opens the account.
    await page.getByTestId('sign-out').last().click();
    await page.getByTestId('signin-email').waitFor({ timeout: 10_000 });

    // Sign in again: the password leads to the second step.
    await signIn(page, email);
    await page.getByTestId('totp-code').waitFor({ timeout: 10_000 });
    // The code used at enrolment is refused (replay) ...
    await page.getByTestId('totp-code').fill(totpCode(secret, enrolledAt));
    await page.getByTestId('totp-submit').click();
    await page.getByTestId('totp-error').waitFor({ timeout: 10_000 });
    // ... the next one works.
    await page.getByTestId('totp-code').fill(totpCode(secret, enrolledAt + 30));
    await page.getByTestId('totp-submit').click();
    await page.getByTestId('account-title').waitFor({ timeout: 10_000 });
    await page.getByTestId('session-item').first().waitFor();

    assert.deepEqual(nonLoopback(requests), [], 'every request stayed on loopback');
    assert.deepEqual(await cspViolations(page), [], 'no CSP violations');
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('the session cookie is kept on http://127.0.0.1 as well', { timeout: 60_000 }, async () => {
  try {
    const { page, context } = browser;
    const loopback = server.url.replace('localhost', '127.0.0.1');
    await context.clearCookies();
    await page.goto(`${loopback}/account/sign-in`);
    await page.getByTestId('signin-email').fill('nobody@example.org');
    await page.getByTestId('signin-password').fill(PASSWORD);
    await page.getByTestId('signin-submit').click();
    // Unknown account: the same answer as a wrong password.
    await page.getByTestId('signin-error').getByText('The e-mail address or the password is wrong.').waitFor({ timeout: 10_000 });
    await page.getByTestId('signin-email').fill('ada@example.org');
    await page.getByTestId('signin-submit').click();
    await page.getByTestId('totp-code').waitFor({ timeout: 10_000 });
    const cookies = await context.cookies(loopback);
    assert.ok(cookies.some((c) => c.name === '__Host-conclave_session' && c.secure), JSON.stringify(cookies));
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('a forgotten password is reset by mail; the second factor is still asked', { timeout: 60_000 }, async () => {
  try {
    const { page, context } = browser;
    await context.clearCookies();
    const before = (await smtp.mails()).filter((m) => m.to === 'ada@example.org').length;
    await page.goto(`${server.url}/account/sign-in`);
    await page.getByTestId('forgot-link').click();
    await page.getByTestId('forgot-email').fill('ada@example.org');
    await page.getByTestId('forgot-submit').click();
    await page.getByTestId('forgot-done').waitFor({ timeout: 10_000 });
    const mail = await smtp.waitForMail('ada@example.org', { after: before });
    const link = linkIn(mail);
    assert.ok(link.includes('/account/reset#token='), link);
    await page.goto(link);
    await page.getByTestId('reset-password').fill('amber lantern drifts over granite hills');
    await page.getByTestId('reset-submit').click();
    await page.getByTestId('reset-done').waitFor({ timeout: 10_000 });
    await page.goto(`${server.url}/account/sign-in`);
    await page.getByTestId('signin-email').fill('ada@example.org');
    await page.getByTestId('signin-password').fill('amber lantern drifts over granite hills');
    await page.getByTestId('signin-submit').click();
    await page.getByTestId('totp-code').waitFor({ timeout: 10_000 });
  } catch (err) {
    failed = true;
    throw err;
  }
});
