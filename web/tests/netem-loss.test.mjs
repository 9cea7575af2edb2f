// Video through a lossy link made with netem: the subscriber runs in a
// network namespace the test makes, and the host side of its veth pair
// loses 10%, then 30% of what it sends toward the namespace (signalling and
// media alike). Video must keep decoding and the subscriber must ask for
// the lost packets (NACK). Frames decoded per second, NACKs, retransmissions
// and freezes in each phase are printed, not asserted.
//
// Where the kernel has no netem qdisc (sch_netem; e.g. the machine this was
// written on has only tbf, htb and pfifo built in and no loadable modules),
// the same phases run with the loss made by the UDP relay on loopback of
// lib/lossy-relay.mjs instead, and the test says so in a diagnostic.
//
// Network: only loopback, the host side of the veth pair and the namespace.
// Beyond loopback the server speaks HTTPS with a self-signed certificate it
// made at its first start; the test browsers accept any certificate, which
// is fine because they talk only to the server this test started.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchParticipant, printProblems, requireChromium } from './lib/browser.mjs';
import { joinMeeting, participantItem, randomRoom } from './lib/app.mjs';
import { makeNamespace, randomLink, requireNetworkTools } from './lib/netns.mjs';
import { joinReceiveOnly } from './lib/receive-only.mjs';
import { startLossyRelay } from './lib/lossy-relay.mjs';
import { startServer } from './lib/server.mjs';
import { sleep, videoInbound } from './lib/video-stats.mjs';

const TRUST = { trustAnyCertificate: true };
const PHASE_MS = 12_000;
const SAMPLE_MS = 2_000;

/** Samples the subscriber for PHASE_MS; returns the samples and a summary. */
async function phase(t, page, label) {
  const samples = [await videoInbound(page)];
  for (let i = 0; i < PHASE_MS / SAMPLE_MS; i++) {
    await sleep(SAMPLE_MS);
    samples.push(await videoInbound(page));
  }
  const first = samples[0];
  const last = samples.at(-1);
  const d = (k) => last[k] - first[k];
  const summary = {
    fps: d('decoded') / (PHASE_MS / 1000),
    risingSamples: samples.slice(1).filter((s, i) => s.decoded > samples[i].decoded).length,
    nacks: d('nacks'),
    lost: d('lost'),
    packets: d('packets'),
    retransmitted: d('retransmitted'),
    plis: d('plis'),
    keyFrames: d('keyFrames'),
    freezes: d('freezes'),
    freezeSeconds: Number(d('freezeSeconds').toFixed(2)),
    widths: [...new Set(samples.map((s) => s.width))],
  };
  t.diagnostic(`${label}: ${summary.fps.toFixed(1)} frames/s decoded; ${JSON.stringify(summary)}`);
  return summary;
}

test('video keeps decoding through netem loss toward the subscriber, which sends NACKs', { timeout: 150_000 }, async (t) => {
  requireChromium();
  requireNetworkTools();
  let ns = null;
  let relay = null;
  let server;
  const people = [];
  let failed = true;
  try {
    const link = randomLink('cql');
    ns = await makeNamespace(link.name, link.hostAddr, link.nsAddr);
    try {
      ns.loseDownlink(0);
      ns.clearDownlink();
    } catch (err) {
      t.diagnostic(`no netem in this kernel (${String(err.stderr ?? err.message).trim()}): loss made by a UDP relay on loopback instead`);
      await ns.remove();
      ns = null;
    }
    const room = randomRoom();
    let sub;
    if (ns) {
      server = await startServer({ host: ns.hostAddr });
      people.push(await launchParticipant('netem-pub', TRUST));
      sub = await launchParticipant('netem-sub', { executablePath: ns.chromium, ...TRUST });
    } else {
      // One engine: the relay stands in front of one media port.
      server = await startServer({ mediaBind: '127.0.0.2', workers: 1 });
      relay = await startLossyRelay({ port: server.udpPort });
      people.push(await launchParticipant('relay-pub'));
      sub = await launchParticipant('relay-sub');
    }
    people.push(sub);
    const [pub] = people;
    const setLoss = (percent) => (ns ? (percent ? ns.loseDownlink(percent) : ns.clearDownlink()) : relay.setLoss(percent));
    await joinMeeting(pub.page, server.url, { name: 'Pub', room });
    await joinReceiveOnly(sub.page, server.url, { name: 'Lossy', room });
    await participantItem(sub.page, 'Pub').waitFor({ state: 'attached', timeout: 30_000 });

    // Video first starts cleanly.
    const deadline = Date.now() + 30_000;
    while ((await videoInbound(sub.page)).decoded < 30) {
      assert.ok(Date.now() < deadline, `video never started: ${JSON.stringify(await videoInbound(sub.page))}`);
      await sleep(500);
    }
    const clean = await phase(t, sub.page, 'no loss');

    setLoss(10);
    const ten = await phase(t, sub.page, '10% loss');
    // Decoding goes on in (nearly) every sample, and lost packets are NACKed.
    assert.ok(ten.risingSamples >= PHASE_MS / SAMPLE_MS - 1, `with 10% loss video decoded in only ${ten.risingSamples} samples`);
    assert.ok(ten.nacks > 0, `with 10% loss the subscriber sent no NACKs: ${JSON.stringify(ten)}`);
    assert.ok(ten.retransmitted > 0, `with 10% loss no retransmission (RTX) arrived: ${JSON.stringify(ten)}`);

    setLoss(30);
    const thirty = await phase(t, sub.page, '30% loss');
    assert.ok(thirty.risingSamples > 0, `with 30% loss video stopped decoding: ${JSON.stringify(thirty)}`);
    assert.ok(thirty.nacks > 0, 'with 30% loss the subscriber sent no NACKs');

    setLoss(0);
    await phase(t, sub.page, 'loss lifted');
    if (relay) t.diagnostic(`relay: ${JSON.stringify(relay.counts())}`);
    t.diagnostic(`recovery: ${clean.fps.toFixed(1)} -> ${ten.fps.toFixed(1)} (10%) -> ${thirty.fps.toFixed(1)} (30%) frames/s`);
    failed = false;
  } finally {
    if (failed) {
      printProblems(people);
      if (server) console.error(`--- conclave server output ---\n${server.log()}`);
    }
    await Promise.all(people.map((p) => p.close()));
    relay?.close();
    await server?.stop();
    await ns?.remove();
  }
});
