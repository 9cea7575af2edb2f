// The landing page as served by the Conclave server: CSP header, SPA
// fallback, and input validation.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { cspViolations, launchParticipant, nonLoopback, requireChromium } from './lib/browser.mjs';
import { submitLanding } from './lib/app.mjs';
import { startServer } from './lib/server.mjs';

/** Directives the web client is built for; the server must send at least these. */
const REQUIRED_CSP = {
  'default-src': ["'self'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'connect-src': ["'self'"],
  'frame-ancestors': ["'none'"],
  'base-uri': ["'none'"],
};

function parseCsp(header) {
  const directives = {};
  for (const part of header.split(';')) {
    const [name, ...values] = part.trim().split(/\s+/);
    if (name) directives[name.toLowerCase()] = values;
  }
  return directives;
}

let server;
let failed = false;

before(async () => {
  requireChromium();
  server = await startServer();
});

after(async () => {
  if (failed && server) console.error(`--- conclave server output ---\n${server.log()}`);
  await server?.stop();
});

test('the app is served with a strict Content-Security-Policy', { timeout: 60_000 }, async () => {
  try {
    const res = await fetch(`${server.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/html/);
    const header = res.headers.get('content-security-policy');
    assert.ok(header, 'Content-Security-Policy header is present');
    const csp = parseCsp(header);
    for (const [name, values] of Object.entries(REQUIRED_CSP)) {
      assert.ok(csp[name], `CSP has ${name}`);
      for (const value of values) assert.ok(csp[name].includes(value), `CSP ${name} includes ${value}`);
    }
    for (const name of ['default-src', 'script-src', 'style-src']) {
      assert.ok(!csp[name].includes("'unsafe-inline'") && !csp[name].includes("'unsafe-eval'"), `${name} allows no inline code`);
    }
    const body = await res.text();
    assert.match(body, /<script type="module" src="\/assets\/app-[^"]+\.js"><\/script>/);

    // Unknown paths fall back to the app (client-side routing).
    const fallback = await fetch(`${server.url}/some/unknown/page`);
    assert.equal(fallback.status, 200);
    assert.match(await fallback.text(), /<title>Conclave<\/title>/);
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('the landing page rejects an invalid room name', { timeout: 60_000 }, async () => {
  const browser = await launchParticipant('landing');
  try {
    const { page } = browser;
    let joinRequests = 0;
    page.on('request', (req) => {
      if (new URL(req.url()).pathname === '/api/join') joinRequests++;
    });

    await submitLanding(page, server.url, { name: 'Alice', room: 'not a valid room!' });
    const roomError = page.getByTestId('room-error');
    await roomError.waitFor({ timeout: 10_000 });
    assert.match(await roomError.innerText(), /letters.*digits.*hyphens.*underscores/i);
    assert.equal(await page.getByTestId('room-input').getAttribute('aria-invalid'), 'true');

    // An empty name is refused too.
    await page.getByTestId('name-input').fill('   ');
    await page.getByTestId('room-input').fill('valid-room');
    await page.getByTestId('join-button').click();
    await page.getByTestId('name-error').waitFor({ timeout: 10_000 });
    assert.equal(await page.getByTestId('room-error').isVisible(), false);

    assert.equal(joinRequests, 0, 'nothing was sent to /api/join');
    assert.equal(await page.getByTestId('prejoin-join-button').count(), 0, 'still on the landing page');
    assert.deepEqual(await cspViolations(page), [], 'no CSP violations');
    assert.deepEqual(nonLoopback(browser.requests), [], 'every request stays on loopback');
    assert.deepEqual(browser.problems, [], 'no page errors');
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await browser.close();
  }
});
