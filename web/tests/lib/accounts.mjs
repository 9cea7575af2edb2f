// Helpers of the account browser tests: a real SMTP server (Python's
// aiosmtpd) on loopback, a Conclave server that sends its mail there, the
// links in the mails, and TOTP codes (RFC 6238) computed here.

import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { conclaveBinary, freeUdpPorts } from './server.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function freePort() {
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

async function waitForPort(port, what, child, output) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited early:\n${output()}`);
    const open = await new Promise((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (open) return;
    await sleep(100);
  }
  throw new Error(`${what} did not listen on port ${port}:\n${output()}`);
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = sleep(5_000).then(() => 'timeout');
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Starts aiosmtpd on a free loopback port, storing every mail in a Maildir.
 * Returns { port, mails(), waitForMail(to), stop() }.
 */
export async function startSmtp() {
  const check = spawnSync('python3', ['-c', 'import aiosmtpd'], { stdio: 'ignore' });
  if (check.status !== 0) {
    throw new Error('Python\'s aiosmtpd is missing: python3 -m pip install aiosmtpd==1.4.6 (cargo xtask test installs it)');
  }
  const dir = await mkdtemp(join(tmpdir(), 'conclave-smtp-'));
  const port = await freePort();
  let output = '';
  const child = spawn('python3', ['-m', 'aiosmtpd', '-n', '-l', `127.0.0.1:${port}`, '-c', 'aiosmtpd.handlers.Mailbox', join(dir, 'maildir')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  await waitForPort(port, 'aiosmtpd', child, () => output);

  const mails = async () => {
    const box = join(dir, 'maildir', 'new');
    if (!existsSync(box)) return [];
    const names = (await readdir(box)).sort();
    return Promise.all(names.map(async (n) => decode(await readFile(join(box, n), 'utf8'))));
  };
  /** The first mail to `to` that `seen` did not contain, waiting for it. */
  const waitForMail = async (to, { after = 0, timeout = 15_000 } = {}) => {
    const deadline = Date.now() + timeout;
    while (Date.now() < deadline) {
      const list = (await mails()).filter((m) => m.to.toLowerCase() === to.toLowerCase());
      if (list.length > after) return list[after];
      await sleep(100);
    }
    throw new Error(`no mail to ${to} arrived at the SMTP server within ${timeout / 1000} s`);
  };
  const stop = async () => {
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  };
  return { port, mails, waitForMail, stop, log: () => output };
}

/** Headers and (transfer-decoded) body of a raw message. */
function decode(raw) {
  const text = raw.replace(/\r\n/g, '\n');
  const split = text.indexOf('\n\n');
  const head = text.slice(0, split);
  let body = text.slice(split + 2);
  const header = (name) => {
    const m = head.match(new RegExp(`^${name}:\\s*(.*)$`, 'im'));
    return m ? m[1].trim() : '';
  };
  const encoding = header('Content-Transfer-Encoding').toLowerCase();
  if (encoding === 'quoted-printable') {
    body = body.replace(/=\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  } else if (encoding === 'base64') {
    body = Buffer.from(body, 'base64').toString('utf8');
  }
  return { to: header('X-RcptTo') || header('To'), subject: header('Subject'), body, raw };
}

/** The first account link (`/account/...#token=...`) in a mail. */
export function linkIn(mail) {
  const m = mail.body.match(/https?:\/\/\S+\/account\/\S+#token=[A-Za-z0-9_-]{43}/);
  if (!m) throw new Error(`no account link in the mail:\n${mail.body}`);
  return m[0];
}

/**
 * Starts `conclave serve` with mail going to `smtpPort`, optionally with a
 * configuration file (for [[oidc]]). The public URL is
 * http://localhost:PORT (passkeys need a domain name).
 */
export async function startAccountServer({ smtpPort, configToml = '', env = {}, port: wanted } = {}) {
  const bin = conclaveBinary();
  const dataDir = await mkdtemp(join(tmpdir(), 'conclave-acct-'));
  const port = wanted ?? (await freePort());
  const udp = await freeUdpPorts(2);
  const args = ['serve'];
  if (configToml) {
    const file = join(dataDir, 'conclave.toml');
    await writeFile(file, configToml);
    args.push('--config', file);
  }
  let output = '';
  const child = spawn(bin, args, {
    env: {
      ...process.env,
      CONCLAVE_SERVER_DATA_DIR: dataDir,
      CONCLAVE_HTTP_LISTEN: `127.0.0.1:${port}`,
      CONCLAVE_MEDIA_UDP_PORT: String(udp),
      CONCLAVE_MEDIA_WORKERS: '2',
      CONCLAVE_ROOMS_OPEN_JOIN: 'true',
      ...(smtpPort
        ? {
            CONCLAVE_SMTP_HOST: '127.0.0.1',
            CONCLAVE_SMTP_PORT: String(smtpPort),
            CONCLAVE_SMTP_SECURITY: 'none',
            CONCLAVE_SMTP_FROM: 'Conclave <noreply@conclave.invalid>',
          }
        : {}),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (c) => (output = (output + c).slice(-200_000)));
  child.stderr.on('data', (c) => (output = (output + c).slice(-200_000)));
  await waitForPort(port, 'conclave', child, () => output);
  const url = `http://localhost:${port}`;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  return {
    url,
    port,
    dataDir,
    log: () => output,
    stop: async () => {
      await stopChild(child);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Calls the account API as the server's own page would. */
export async function api(server, path, body, cookie) {
  const res = await fetch(`${server.url}/api/account${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      'Content-Type': 'application/json',
      Origin: server.url,
      ...(cookie ? { Cookie: cookie } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null), headers: res.headers };
}

/** Registers and confirms an account through the API and the real mail. */
export async function createAccount(server, smtp, { email, name, password }) {
  const r = await api(server, '/register', { email, name, password });
  if (r.status !== 200) throw new Error(`registration failed: ${JSON.stringify(r.body)}`);
  const mail = await smtp.waitForMail(email);
  const token = linkIn(mail).split('#token=')[1];
  const c = await api(server, '/confirm', { token });
  if (c.status !== 200) throw new Error(`confirmation failed: ${JSON.stringify(c.body)}`);
}

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret at `unixSeconds`. */
export function totpCode(secret, unixSeconds = Date.now() / 1000) {
  const counter = Math.floor(unixSeconds / 30);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', base32Decode(secret)).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}
