import { get as httpsGet } from 'node:https';
// Starts a Conclave server for a test: fresh data directory, free loopback
// ports, open-room mode. The binary comes from $CONCLAVE_BIN.

import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
const LOG_LIMIT = 200_000;

export function conclaveBinary() {
  const bin = process.env.CONCLAVE_BIN;
  const hint = 'build it with cargo build -p conclave-server or run cargo xtask test';
  if (!bin) throw new Error(`CONCLAVE_BIN is not set: it must point to the conclave server binary (${hint}).`);
  if (!existsSync(bin)) throw new Error(`CONCLAVE_BIN=${bin} does not exist (${hint}).`);
  return bin;
}

function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function bindUdp(port) {
  return new Promise((resolve) => {
    const sock = createSocket('udp4');
    sock.once('error', () => resolve(null));
    sock.bind(port, '127.0.0.1', () => resolve(sock));
  });
}

/** The first of `count` consecutive loopback UDP ports that were free together. */
export async function freeUdpPorts(count) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const held = [await bindUdp(0)];
    const first = held[0]?.address().port;
    if (first !== undefined && first + count <= 65536) {
      for (let i = 1; i < count && held.at(-1); i++) held.push(await bindUdp(first + i));
    }
    const free = first !== undefined && held.length === count && held.every(Boolean);
    await Promise.all(held.filter(Boolean).map((sock) => new Promise((resolve) => sock.close(resolve))));
    if (free) return first;
  }
  throw new Error(`found no ${count} consecutive free UDP ports on loopback`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `$CONCLAVE_BIN serve` and waits for GET /readyz to answer 200.
 * Returns { url, httpPort, udpPort, log(), stop() }.
 */
/** Status of a GET to the test server's self-signed HTTPS endpoint. */
function httpsStatus(url) {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { rejectUnauthorized: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/**
 * Starts the server. With `host` (an address of a network namespace the
 * test made), it listens and announces media there; beyond loopback the
 * server speaks only HTTPS, with a self-signed certificate. It runs
 * `workers` media engines on consecutive UDP ports from `udpPort`; more than
 * one by default, so that every test crosses the placement of rooms.
 */
export async function startServer({ host = '127.0.0.1', mediaBind = host, workers = 2 } = {}) {
  const bin = conclaveBinary();
  const dataDir = await mkdtemp(join(tmpdir(), 'conclave-test-'));
  const httpPort = await freeTcpPort();
  const udpPort = await freeUdpPorts(workers);
  const tls = host !== '127.0.0.1';
  const url = `${tls ? 'https' : 'http'}://${host}:${httpPort}`;

  let output = '';
  const capture = (chunk) => {
    output += chunk.toString();
    if (output.length > LOG_LIMIT) output = output.slice(-LOG_LIMIT);
  };

  const child = spawn(bin, ['serve'], {
    env: {
      ...process.env,
      CONCLAVE_SERVER_DATA_DIR: dataDir,
      CONCLAVE_HTTP_LISTEN: `${host}:${httpPort}`,
      CONCLAVE_MEDIA_UDP_PORT: String(udpPort),
      CONCLAVE_MEDIA_WORKERS: String(workers),
      CONCLAVE_MEDIA_ANNOUNCE: host,
      CONCLAVE_MEDIA_BIND: mediaBind,
      CONCLAVE_ROOMS_OPEN_JOIN: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', capture);
  child.stderr.on('data', capture);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.on('error', (err) => {
      exited = { code: null, signal: null, error: err };
      capture(`\n[failed to start: ${err.message}]\n`);
      resolve(exited);
    });
  });

  const log = () => output;

  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = sleep(STOP_TIMEOUT_MS).then(() => 'timeout');
      if ((await Promise.race([exitPromise, timer])) === 'timeout') {
        child.kill('SIGKILL');
        await exitPromise;
      }
    }
    await rm(dataDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastProblem = 'no answer yet';
  while (true) {
    if (exited) {
      await stop();
      throw new Error(`conclave server exited before it was ready (${JSON.stringify(exited)}). Its output:\n${log()}`);
    }
    try {
      const status = tls ? await httpsStatus(`${url}/readyz`) : (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) })).status;
      if (status === 200) break;
      lastProblem = `GET /readyz answered ${status}`;
    } catch (err) {
      lastProblem = `GET /readyz failed: ${err.cause?.code ?? err.message}`;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`conclave server was not ready within ${READY_TIMEOUT_MS / 1000} s (${lastProblem}). Its output:\n${log()}`);
    }
    await sleep(200);
  }

  return { url, httpPort, udpPort, dataDir, log, stop };
}
