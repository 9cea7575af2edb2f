// OpenID Connect sign-in against a real provider (oidc-provider) on
// loopback: authorization code with PKCE, state bound to the browser,
// nonce; claims mapped to attributes and to the administrator role.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort, startAccountServer } from './lib/accounts.mjs';
import { cspViolations, launchParticipant, nonLoopback, requireChromium } from './lib/browser.mjs';
import { CLIENT_ID, CLIENT_SECRET, startOidcProvider } from './lib/oidc-provider.mjs';

let idp;
let server;
let browser;
let failed = false;

before(async () => {
  requireChromium();
  const port = await freePort();
  idp = await startOidcProvider({ redirectUri: `http://localhost:${port}/api/account/oidc/corp/callback` });
  const configToml = `
[[oidc]]
id = "corp"
name = "Corp ID"
issuer = "${idp.issuer}"
client_id = "${CLIENT_ID}"
client_secret = "${CLIENT_SECRET}"
scopes = ["email", "profile", "groups"]
role_claim = "groups"
admin_values = ["conclave-admins"]
attribute_claims = ["groups"]
`;
  server = await startAccountServer({ port, configToml });
  browser = await launchParticipant('oidc');
});

after(async () => {
  if (failed && server) console.error(`--- conclave server output ---\n${server.log()}`);
  await browser?.close();
  await server?.stop();
  await idp?.stop();
});

/** The provider's login page (login and consent in one step). */
async function loginAtProvider(page, login) {
  await page.locator('input[name="login"]').waitFor({ timeout: 15_000 });
  assert.ok(page.url().startsWith(idp.issuer), `at the provider: ${page.url()}`);
  await page.locator('input[name="login"]').fill(login);
  await page.locator('button[type="submit"]').click();
}

test('sign in with an OpenID provider; claims become attributes', { timeout: 120_000 }, async () => {
  try {
    const { page, requests } = browser;
    await page.goto(`${server.url}/account/sign-in`);
    const start = page.waitForRequest((r) => r.url().startsWith(`${idp.issuer}/auth`));
    await page.getByTestId('oidc-corp').click();
    const auth = new URL((await start).url());
    // PKCE with S256, a state and a nonce.
    assert.equal(auth.searchParams.get('code_challenge_method'), 'S256');
    assert.ok((auth.searchParams.get('code_challenge') ?? '').length >= 43);
    assert.ok(auth.searchParams.get('state'));
    assert.ok(auth.searchParams.get('nonce'));
    await loginAtProvider(page, 'alice');
    await page.getByTestId('account-title').waitFor({ timeout: 15_000 });
    assert.equal(await page.getByTestId('account-name').textContent(), 'IdP alice');
    assert.equal(await page.getByTestId('account-email').textContent(), 'alice@idp.example');
    const me = await page.evaluate(async () => (await fetch('/api/account/me')).json());
    assert.equal(me.account.role, 'user');
    assert.deepEqual(me.account.attributes, { groups: ['staff'] });
    assert.deepEqual(me.account.identities, ['corp']);
    assert.deepEqual(nonLoopback(requests), [], 'every request stayed on loopback');
    assert.deepEqual(await cspViolations(page), [], 'no CSP violations');
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('a provider group makes an administrator, who must enrol a second factor', { timeout: 120_000 }, async () => {
  try {
    const { page, context } = browser;
    await context.clearCookies();
    await page.goto(`${server.url}/account/sign-in`);
    await page.getByTestId('oidc-corp').click();
    await loginAtProvider(page, 'admin-bob');
    await page.getByTestId('totp-setup').waitFor({ timeout: 15_000 });
    const me = await page.evaluate(async () => (await fetch('/api/account/me')).json());
    assert.equal(me.level, 'must_enrol');
    assert.equal(me.account.role, 'admin');
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('a callback with a state this browser did not start is refused', { timeout: 60_000 }, async () => {
  try {
    const { page, context } = browser;
    await context.clearCookies();
    await page.goto(`${server.url}/api/account/oidc/corp/callback?code=forged&state=forged`);
    await page.getByTestId('signin-error').waitFor({ timeout: 10_000 });
    assert.match(await page.getByTestId('signin-error').textContent(), /not valid/);
    const cookies = await context.cookies(server.url);
    assert.ok(!cookies.some((c) => c.name === '__Host-conclave_session'), 'no session');
  } catch (err) {
    failed = true;
    throw err;
  }
});
