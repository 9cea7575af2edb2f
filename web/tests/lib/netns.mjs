// A network namespace with a veth link to the host, for tests that shape
// what crosses the network. Only addresses inside the namespace and on its
// host-side link are used. Needs root and iproute2.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function ip(...args) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function tc(...args) {
  execFileSync('tc', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function requireNetworkTools() {
  for (const tool of ['/usr/sbin/ip', '/usr/sbin/tc']) {
    if (!existsSync(tool) && !existsSync(tool.replace('/usr/sbin', '/sbin'))) {
      throw new Error(`${tool} is missing: apt-get install iproute2`);
    }
  }
  if (process.getuid?.() !== 0) throw new Error('network namespace tests must run as root');
}

/**
 * A random /30 inside 10.213.0.0/16 for one namespace link, with a random
 * namespace name, so that tests running at the same time (or left over from
 * an aborted run) do not share addresses. Returns { name, hostAddr, nsAddr }.
 */
export function randomLink(prefix = 'cnc') {
  const third = 1 + Math.floor(Math.random() * 254);
  const base = 4 * Math.floor(Math.random() * 63);
  const name = `${prefix}${Math.random().toString(36).slice(2, 7)}`;
  return { name, hostAddr: `10.213.${third}.${base + 1}`, nsAddr: `10.213.${third}.${base + 2}` };
}

/**
 * Makes namespace `name` linked to the host: host side `hostAddr`/30 on
 * `<name>h`, namespace side `nsAddr`/30 on `<name>n`. Returns the
 * addresses, a Chromium wrapper that runs inside the namespace, a way to
 * shape the host-to-namespace direction, and `remove()`.
 */
export async function makeNamespace(name, hostAddr, nsAddr) {
  requireNetworkTools();
  const hostDev = `${name}h`;
  const nsDev = `${name}n`;
  ip('netns', 'add', name);
  // IPv4 only inside: no IPv6 link-local address turns up on the veth a
  // moment later, which Chromium would take for a network change.
  execFileSync('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const dir = await mkdtemp(join(tmpdir(), `conclave-${name}-`));
  try {
    ip('link', 'add', hostDev, 'type', 'veth', 'peer', 'name', nsDev);
    ip('link', 'set', nsDev, 'netns', name);
    // IPv4 only on the host side too: a link-local address that turns up
    // there a second or two after the link does (when duplicate address
    // detection ends) is a network change to every browser on the host, and
    // Chromium aborts what it is loading then (ERR_NETWORK_CHANGED), a page's
    // scripts included.
    const hostIpv6 = `/proc/sys/net/ipv6/conf/${hostDev}/disable_ipv6`;
    if (existsSync(hostIpv6)) await writeFile(hostIpv6, '1\n');
    ip('addr', 'add', `${hostAddr}/30`, 'dev', hostDev);
    ip('link', 'set', hostDev, 'up');
    ip('-n', name, 'addr', 'add', `${nsAddr}/30`, 'dev', nsDev);
    ip('-n', name, 'link', 'set', nsDev, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    const chromium = join(dir, 'chromium-in-netns');
    await writeFile(chromium, `#!/bin/sh\nexec ip netns exec ${name} /usr/bin/chromium "$@"\n`);
    await chmod(chromium, 0o755);
    return {
      hostAddr,
      nsAddr,
      chromium,
      /** Limits what flows from the host into the namespace. */
      shapeDownlink(rateKbit) {
        tc('qdisc', 'replace', 'dev', hostDev, 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '16kbit', 'latency', '200ms');
      },
      /** Loses this share of packets from the host into the namespace. */
      loseDownlink(percent) {
        tc('qdisc', 'replace', 'dev', hostDev, 'root', 'netem', 'loss', `${percent}%`);
      },
      /**
       * Gives the namespace side a new address, as when a device changes
       * networks: the new address comes up, the host routes it, and the old
       * one goes. The namespace keeps its way to `hostAddr`.
       */
      changeAddress(newAddr) {
        ip('-n', name, 'addr', 'add', `${newAddr}/32`, 'dev', nsDev);
        ip('route', 'add', `${newAddr}/32`, 'dev', hostDev);
        ip('-n', name, 'route', 'add', `${hostAddr}/32`, 'dev', nsDev, 'src', newAddr);
        ip('-n', name, 'addr', 'del', `${this.nsAddr}/30`, 'dev', nsDev);
        this.nsAddr = newAddr;
      },
      /** Takes any shaping off the host-to-namespace direction. */
      clearDownlink() {
        try {
          tc('qdisc', 'del', 'dev', hostDev, 'root');
        } catch {
          // Nothing was shaped.
        }
      },
      async remove() {
        try {
          ip('link', 'del', hostDev);
        } catch {
          // Gone with the namespace.
        }
        ip('netns', 'del', name);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    try {
      ip('netns', 'del', name);
    } catch {
      // Nothing to undo.
    }
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
