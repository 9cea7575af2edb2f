// Nobody is in a room unlabelled: participants whose token claims the kind
// of a bot (agent), a recorder (egress) or a phone line (sip) appear with
// that label in everyone's roster and on their tile.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { cspViolations, launchParticipant, requireChromium } from './lib/browser.mjs';
import { joinFromPrejoin, report } from './lib/meetings.mjs';
import { startServer } from './lib/server.mjs';

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An access token signed with the server's own API secret (from its data directory). */
async function tokenFor(server, { room, identity, name, kind }) {
  const keys = await readFile(join(server.dataDir, 'keys.toml'), 'utf8');
  const key = /^api_key\s*=\s*"([^"]+)"/m.exec(keys)?.[1];
  const secret = /^api_secret\s*=\s*"([^"]+)"/m.exec(keys)?.[1];
  assert.ok(key && secret, 'the server wrote its API key and secret');
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: key, sub: identity, name, nbf: now - 5, exp: now + 600, kind, video: { roomJoin: true, room, canPublish: true, canSubscribe: true, canPublishData: true } };
  const body = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

test('bots, recorders and phone lines are labelled in the roster', { timeout: 180_000 }, async () => {
  requireChromium();
  const server = await startServer();
  const people = [];
  let failed = true;
  try {
    const room = randomRoom();
    const alice = await launchParticipant('alice');
    const other = await launchParticipant('other');
    people.push(alice, other);
    await joinMeeting(alice.page, server.url, { name: 'Alice', room });

    for (const [kind, name, label] of [
      ['agent', 'Note taker', 'bot'],
      ['egress', 'Recorder', 'recorder'],
      ['sip', '+49 30 1234', 'phone'],
    ]) {
      const token = await tokenFor(server, { room, identity: `${kind}-1`, name, kind });
      // A fresh load (a change of the fragment alone would not start the app again).
      await other.page.goto('about:blank');
      await other.page.goto(`${server.url}/#token=${token}`);
      await joinFromPrejoin(other.page, name);
      const entry = participantItem(alice.page, name);
      await entry.locator(`[data-label="${label}"]`).waitFor({ timeout: 30_000 });
      assert.match(await alice.page.locator(`[data-testid="video-tile"][data-identity="${kind}-1"]`).innerText(), new RegExp(label));
      // A person is not labelled as one.
      assert.equal(await participantItem(alice.page, 'Alice').locator('[data-label]').count(), 0);
      await other.page.getByTestId('leave-button').click();
      await entry.waitFor({ state: 'detached', timeout: 30_000 });
    }

    for (const who of people) assert.deepEqual(await cspViolations(who.page), [], `${who.label}: no CSP violations`);
    failed = false;
  } finally {
    if (failed) report(server, people);
    await Promise.all(people.map((p) => p.close()));
    await server.stop();
  }
});
