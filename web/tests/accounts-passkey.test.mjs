// Passkeys in the browser: enrol one with Chromium's virtual authenticator
// (DevTools protocol, WebAuthn domain), sign out, and use it as the second
// step of sign-in.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createAccount, startAccountServer, startSmtp } from './lib/accounts.mjs';
import { cspViolations, launchParticipant, nonLoopback, requireChromium } from './lib/browser.mjs';

const EMAIL = 'grace@example.org';
const PASSWORD = 'violet kestrel orbits the quiet meadow';

let smtp;
let server;
let browser;
let failed = false;

before(async () => {
  requireChromium();
  smtp = await startSmtp();
  server = await startAccountServer({ smtpPort: smtp.port });
  browser = await launchParticipant('passkey');
});

after(async () => {
  if (failed && server) console.error(`--- conclave server output ---\n${server.log()}`);
  await browser?.close();
  await server?.stop();
  await smtp?.stop();
});

async function signIn(page) {
  await page.goto(`${server.url}/account/sign-in`);
  await page.getByTestId('signin-email').fill(EMAIL);
  await page.getByTestId('signin-password').fill(PASSWORD);
  await page.getByTestId('signin-submit').click();
}

test('enrol a passkey and sign in with it', { timeout: 120_000 }, async () => {
  try {
    const { page, context, requests } = browser;
    await createAccount(server, smtp, { email: EMAIL, name: 'Grace Hopper', password: PASSWORD });

    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });

    await signIn(page);
    await page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    await page.getByTestId('passkey-name').fill('Test laptop');
    await page.getByTestId('passkey-add-submit').click();
    await page.getByTestId('recovery-codes').waitFor({ timeout: 15_000 });
    await page.getByTestId('passkey-list').getByText('Test laptop').waitFor();
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1, 'the authenticator holds one credential');
    assert.equal(credentials[0].rpId, 'localhost');

    await page.getByTestId('sign-out').last().click();
    await page.getByTestId('signin-email').waitFor({ timeout: 10_000 });

    await signIn(page);
    await page.getByTestId('passkey-signin').click();
    await page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.ok(after.credentials[0].signCount >= 1, 'the passkey signed');

    // A passkey the server does not know is refused: remove the credential and try again.
    await page.getByTestId('sign-out').last().click();
    await page.getByTestId('signin-email').waitFor({ timeout: 10_000 });
    await cdp.send('WebAuthn.clearCredentials', { authenticatorId });
    await signIn(page);
    await page.getByTestId('passkey-signin').click();
    await page.getByTestId('passkey-signin-error').waitFor({ timeout: 15_000 });

    assert.deepEqual(nonLoopback(requests), [], 'every request stayed on loopback');
    assert.deepEqual(await cspViolations(page), [], 'no CSP violations');
  } catch (err) {
    failed = true;
    throw err;
  }
});
