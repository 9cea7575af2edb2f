// Headless Chromium (Debian's package) for browser tests. Each participant
// gets its own browser with a fresh profile, fake camera and microphone.

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Runs in every page before the app: records peer connections and CSP violations. */
function instrumentPage() {
  const pcs = [];
  const violations = [];
  Object.defineProperty(window, '__pcs', { value: pcs });
  Object.defineProperty(window, '__cspViolations', { value: violations });
  document.addEventListener('securitypolicyviolation', (e) => {
    violations.push({
      directive: e.violatedDirective,
      blocked: e.blockedURI,
      source: e.sourceFile,
      line: e.lineNumber,
      sample: e.sample,
    });
  });
  const Native = window.RTCPeerConnection;
  if (Native) {
    class TrackedPeerConnection extends Native {
      constructor(...args) {
        super(...args);
        pcs.push(this);
      }
    }
    window.RTCPeerConnection = TrackedPeerConnection;
  }
}

export function requireChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium was not found at ${CHROMIUM}: apt-get install chromium`);
  }
}

/**
 * Launches a browser with its own profile and opens one page.
 * Returns { context, page, requests, problems, failedRequests, close() }.
 */
export async function launchParticipant(
  label,
  { executablePath = CHROMIUM, extraArgs = [], trustAnyCertificate = false } = {},
) {
  requireChromium();
  const profile = await mkdtemp(join(tmpdir(), `conclave-browser-${label}-`));
  const context = await chromium.launchPersistentContext(profile, {
    // A wrapper may run Debian's Chromium inside a test's network namespace.
    executablePath,
    headless: true,
    // The profile directory is passed to Chromium as --user-data-dir.
    args: [...ARGS, ...extraArgs],
    ignoreHTTPSErrors: trustAnyCertificate,
    viewport: { width: 1280, height: 800 },
    permissions: ['camera', 'microphone'],
  });
  await context.addInitScript(instrumentPage);

  const requests = [];
  const problems = [];
  const page = context.pages()[0] ?? (await context.newPage());
  context.on('request', (req) => requests.push(req.url()));
  page.on('websocket', (ws) => requests.push(ws.url()));
  page.on('pageerror', (err) => problems.push(`[${label}] page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`[${label}] console: ${msg.text()}`);
  });
  // Kept apart from `problems`: leaving a page aborts its requests.
  const failedRequests = [];
  page.on('requestfailed', (req) => failedRequests.push(`[${label}] request failed: ${req.url()}: ${req.failure()?.errorText}`));

  const close = async () => {
    await context.close().catch(() => undefined);
    await rm(profile, { recursive: true, force: true });
  };
  return { context, page, requests, problems, failedRequests, close, label };
}

/** Prints each participant's page errors and failed requests (the last 40), for a failed test. */
export function printProblems(participants) {
  for (const who of participants) {
    const all = [...who.problems, ...who.failedRequests];
    if (all.length === 0) continue;
    const shown = all.slice(-40).map((line) => (line.length > 400 ? `${line.slice(0, 400)}…` : line));
    console.error(`--- browser ${who.label} (last ${shown.length} of ${all.length} problems) ---\n${shown.join('\n')}`);
  }
}

/** URLs among `urls` whose host is not a loopback address. */
export function nonLoopback(urls) {
  return urls.filter((u) => {
    let parsed;
    try {
      parsed = new URL(u);
    } catch {
      return true;
    }
    if (parsed.protocol === 'data:' || parsed.protocol === 'blob:' || parsed.protocol === 'about:') return false;
    return !LOOPBACK_HOSTS.has(parsed.hostname) && !LOOPBACK_HOSTS.has(`[${parsed.hostname}]`);
  });
}

export async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations ?? []);
}

/** Sums inbound RTP counters over all peer connections of the page. */
export async function inboundStats(page) {
  return page.evaluate(async () => {
    const totals = { audioPackets: 0, audioSamples: 0, videoPackets: 0, framesDecoded: 0, peerConnections: 0 };
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      totals.peerConnections++;
      let report;
      try {
        report = await pc.getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'audio') {
          totals.audioPackets += s.packetsReceived ?? 0;
          totals.audioSamples += s.totalSamplesReceived ?? 0;
        } else if (s.kind === 'video') {
          totals.videoPackets += s.packetsReceived ?? 0;
          totals.framesDecoded += s.framesDecoded ?? 0;
        }
      });
    }
    return totals;
  });
}
