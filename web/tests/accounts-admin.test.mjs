// Administration in the browser: the first administrator invited from the
// command line, their mandatory second factor, then inviting, disabling
// and deleting a user on the admin page.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { linkIn, startAccountServer, startSmtp, totpCode } from './lib/accounts.mjs';
import { cspViolations, launchParticipant, nonLoopback, requireChromium } from './lib/browser.mjs';
import { conclaveBinary } from './lib/server.mjs';

const PASSWORD = 'violet kestrel orbits the quiet meadow';

let smtp;
let server;
let browser;
let failed = false;

before(async () => {
  requireChromium();
  smtp = await startSmtp();
  server = await startAccountServer({ smtpPort: smtp.port, env: { CONCLAVE_ACCOUNTS_SELF_REGISTRATION: 'false' } });
  browser = await launchParticipant('admin');
});

after(async () => {
  if (failed && server) console.error(`--- conclave server output ---\n${server.log()}`);
  await browser?.close();
  await server?.stop();
  await smtp?.stop();
});

test('the first administrator enrols a second factor, then invites, disables and deletes', { timeout: 120_000 }, async () => {
  try {
    const { page, requests } = browser;
    page.on('dialog', (d) => void d.accept());
    // The command line, with the server's configuration, prints the invitation link (and mails it).
    const link = execFileSync(conclaveBinary(), ['invite', '--data-dir', server.dataDir, '--email', 'root@example.org', '--admin'], {
      env: {
        ...process.env,
        CONCLAVE_HTTP_LISTEN: `127.0.0.1:${server.port}`,
        CONCLAVE_SMTP_HOST: '127.0.0.1',
        CONCLAVE_SMTP_PORT: String(smtp.port),
        CONCLAVE_SMTP_SECURITY: 'none',
      },
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .pop();
    assert.match(link, /\/account\/invite#token=/);
    assert.equal(linkIn(await smtp.waitForMail('root@example.org')), link);

    await page.goto(link);
    await page.getByTestId('invite-name').fill('Root Admin');
    await page.getByTestId('invite-password').fill(PASSWORD);
    await page.getByTestId('invite-submit').click();
    await page.getByText('Your account is ready').waitFor({ timeout: 10_000 });

    // Registration is closed on this server.
    await page.goto(`${server.url}/account/register`);
    await page.getByText('by invitation only').waitFor({ timeout: 10_000 });

    await page.goto(`${server.url}/account/sign-in`);
    await page.getByTestId('signin-email').fill('root@example.org');
    await page.getByTestId('signin-password').fill(PASSWORD);
    await page.getByTestId('signin-submit').click();
    // An administrator must enrol a second factor before anything else.
    await page.getByTestId('totp-setup').click();
    const secret = (await page.getByTestId('totp-secret').textContent()).trim();
    await page.getByTestId('totp-confirm-code').fill(totpCode(secret));
    await page.getByTestId('totp-confirm-submit').click();
    await page.getByTestId('enrol-continue').click();
    // The only second factor of an administrator cannot be removed.
    await page.getByTestId('totp-remove').click();
    await page.getByTestId('totp-remove-password').fill(PASSWORD);
    await page.getByTestId('totp-remove-confirm-submit').click();
    await page.getByTestId('totp-remove-confirm-error').getByText(/must keep a second factor/).waitFor({ timeout: 10_000 });
    await page.getByTestId('admin-link').click();
    await page.getByTestId('admin-users').waitFor({ timeout: 10_000 });

    await page.getByTestId('admin-invite-email').fill('new@example.org');
    await page.getByTestId('admin-invite-submit').click();
    const row = page.getByTestId('admin-user').filter({ hasText: 'new@example.org' });
    await row.waitFor({ timeout: 10_000 });
    assert.match(await row.textContent(), /pending/);
    assert.match(linkIn(await smtp.waitForMail('new@example.org')), /\/account\/invite#token=/);

    await row.getByRole('button', { name: 'Disable' }).click();
    await page.getByTestId('admin-user').filter({ hasText: 'new@example.org' }).filter({ hasText: 'disabled' }).waitFor({ timeout: 10_000 });
    await page.getByTestId('admin-user').filter({ hasText: 'new@example.org' }).getByRole('button', { name: 'Delete' }).click();
    await page.getByTestId('admin-user').filter({ hasText: 'new@example.org' }).waitFor({ state: 'detached', timeout: 10_000 });
    assert.match(await page.getByTestId('admin-audit').textContent(), /account\.delete/);
    assert.doesNotMatch(await page.getByTestId('admin-audit').textContent(), /usr_|@/, 'the audit log names people by pseudonym only');

    assert.deepEqual(nonLoopback(requests), [], 'every request stayed on loopback');
    assert.deepEqual(await cspViolations(page), [], 'no CSP violations');
  } catch (err) {
    failed = true;
    throw err;
  }
});
