// End-to-end encryption through the SFU: participants join with
// livekit-client's E2EE (a shared key through ExternalE2EEKeyProvider and
// the e2ee worker) and must decode each other's video, so forwarding works
// with encrypted payloads. A participant with the wrong key must not decode
// it, which shows the media really was encrypted end to end.
//
// The web app has no E2EE option, so the test bundles a tiny page
// (tests/fixtures/e2ee-client.mjs and livekit-client's e2ee worker) with
// esbuild into a temporary directory and serves it from 127.0.0.1; every
// other path (signalling WebSocket, /rtc/validate) is passed through to the
// Conclave server on loopback, so the page and the signalling share one
// origin as they do in the web app. Tokens come from /api/join.

import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { launchParticipant, nonLoopback, requireChromium } from './lib/browser.mjs';
import { randomRoom } from './lib/app.mjs';
import { startServer } from './lib/server.mjs';

const webRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Bundles the test page and the e2ee worker; serves them on 127.0.0.1 in front of `target`. */
async function servePage(target) {
  const upstream = new URL(target);
  const dir = await mkdtemp(join(tmpdir(), 'conclave-e2ee-page-'));
  const common = { absWorkingDir: webRoot, bundle: true, platform: 'browser', format: 'esm', target: 'chrome111', logLevel: 'warning' };
  await build({ ...common, entryPoints: ['tests/fixtures/e2ee-client.mjs'], outfile: join(dir, 'client.js') });
  await build({ ...common, entryPoints: ['livekit-client/e2ee-worker'], outfile: join(dir, 'e2ee-worker.js') });
  await writeFile(
    join(dir, 'index.html'),
    '<!doctype html><html><head><meta charset="utf-8"><title>e2ee</title>' +
      '<script type="module" src="/client.js"></script></head><body></body></html>',
  );
  const types = { html: 'text/html', js: 'text/javascript' };
  const files = { '/': 'index.html', '/client.js': 'client.js', '/e2ee-worker.js': 'e2ee-worker.js' };
  const http = createServer(async (req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      // Everything else is the Conclave server's.
      const up = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (upRes) => {
          res.writeHead(upRes.statusCode, upRes.headers);
          upRes.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
      return;
    }
    const body = await readFile(join(dir, file));
    res.writeHead(200, { 'content-type': types[file.split('.').pop()], 'cache-control': 'no-store' }).end(body);
  });
  // WebSocket upgrades go through as raw bytes after the request head.
  http.on('upgrade', (req, socket, head) => {
    const up = connect(Number(upstream.port), upstream.hostname, () => {
      let lines = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(lines + '\r\n');
      if (head?.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${http.address().port}/`,
    async close() {
      http.closeAllConnections?.();
      await new Promise((resolve) => http.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function joinToken(server, room, name) {
  const res = await fetch(`${server.url}/api/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ room, name }),
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 200, `POST /api/join answered ${res.status}`);
  return (await res.json()).token;
}

/** Inbound video frames decoded and bytes received, over all peer connections. */
async function videoIn(page) {
  return page.evaluate(async () => {
    const out = { decoded: 0, bytes: 0, width: 0 };
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          out.decoded += s.framesDecoded ?? 0;
          out.bytes += s.bytesReceived ?? 0;
          out.width = Math.max(out.width, s.frameWidth ?? 0);
        }
      });
    }
    return out;
  });
}

async function joinE2EE(person, pageUrl, wsUrl, token, key) {
  await person.page.goto(pageUrl);
  await person.page.waitForFunction(() => window.conclaveE2EE, null, { timeout: 15_000 });
  return person.page.evaluate(({ url, token, key }) => window.conclaveE2EE.join({ url, token, key }), { url: wsUrl, token, key });
}

test('video is forwarded and decoded with end-to-end encryption on', { timeout: 150_000 }, async (t) => {
  requireChromium();
  let server;
  let page;
  const people = [];
  let failed = true;
  try {
    server = await startServer();
    page = await servePage(server.url);
    const wsUrl = page.url.replace(/^http/, 'ws').replace(/\/$/, '');
    const room = randomRoom();
    const key = `conclave-test-key-${Math.random().toString(36).slice(2)}`;

    const alice = await launchParticipant('e2ee-alice');
    people.push(alice);
    const bob = await launchParticipant('e2ee-bob');
    people.push(bob);
    const a = await joinE2EE(alice, page.url, wsUrl, await joinToken(server, room, 'Alice'), key);
    const b = await joinE2EE(bob, page.url, wsUrl, await joinToken(server, room, 'Bob'), key);
    t.diagnostic(`joined: ${JSON.stringify(a)} ${JSON.stringify(b)}`);
    assert.ok(a.e2ee && b.e2ee, 'E2EE is not enabled in the room');

    // Both decode the other's (encrypted) video: frames decoded keep rising.
    for (const person of [alice, bob]) {
      const deadline = Date.now() + 45_000;
      let before = await videoIn(person.page);
      let rises = 0;
      while (rises < 3) {
        assert.ok(
          Date.now() < deadline,
          `${person.label} did not keep decoding video: ${JSON.stringify(before)}; ` +
            `state ${JSON.stringify(await person.page.evaluate(() => window.conclaveE2EE.state()))}`,
        );
        await sleep(1_500);
        const now = await videoIn(person.page);
        if (now.decoded > before.decoded && now.width > 0) rises++;
        before = now;
      }
      const state = await person.page.evaluate(() => window.conclaveE2EE.state());
      t.diagnostic(`${person.label}: ${JSON.stringify(before)} ${JSON.stringify(state)}`);
      assert.ok(state.remotes.length === 1 && state.remotes[0].encrypted, `${person.label} does not see the other as encrypted`);
    }

    // A third participant with the wrong key receives the packets but cannot
    // decode the frames.
    const eve = await launchParticipant('e2ee-wrong-key');
    people.push(eve);
    await joinE2EE(eve, page.url, wsUrl, await joinToken(server, room, 'Eve'), `${key}-wrong`);
    const deadline = Date.now() + 30_000;
    let eveStats = await videoIn(eve.page);
    while (eveStats.bytes < 200_000) {
      assert.ok(Date.now() < deadline, `the wrong-key participant received no video: ${JSON.stringify(eveStats)}`);
      await sleep(1_000);
      eveStats = await videoIn(eve.page);
    }
    await sleep(3_000);
    eveStats = await videoIn(eve.page);
    const eveState = await eve.page.evaluate(() => window.conclaveE2EE.state());
    t.diagnostic(`wrong key: ${JSON.stringify(eveStats)} ${JSON.stringify(eveState)}`);
    assert.ok(eveStats.decoded <= 2, `a participant with the wrong key decoded ${eveStats.decoded} frames`);
    // Everyone talked to loopback only.
    for (const person of people) assert.deepEqual(nonLoopback(person.requests), [], `${person.label} left loopback`);
    failed = false;
  } finally {
    if (failed) {
      for (const person of people) if (person.problems.length) console.error(person.problems.join('\n'));
      if (server) console.error(`--- conclave server output ---\n${server.log()}`);
    }
    await Promise.all(people.map((p) => p.close()));
    await page?.close();
    await server?.stop();
  }
});
