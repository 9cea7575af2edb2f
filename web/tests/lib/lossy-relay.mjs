// A UDP relay on loopback that loses a share of the datagrams flowing from
// the server to the clients: the server binds its media port on 127.0.0.2
// and announces 127.0.0.1, where this relay listens on the same port.

import dgram from 'node:dgram';

export async function startLossyRelay({ port, serverAddr = '127.0.0.2', lossPercent = 0 }) {
  const front = dgram.createSocket('udp4');
  const upstreams = new Map();
  let loss = lossPercent;
  let dropped = 0;
  let passed = 0;
  front.on('message', (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let up = upstreams.get(key);
    if (!up) {
      up = dgram.createSocket('udp4');
      up.on('message', (reply) => {
        if (Math.random() * 100 < loss) {
          dropped++;
          return;
        }
        passed++;
        front.send(reply, from.port, from.address);
      });
      up.bind(0, '127.0.0.1');
      upstreams.set(key, up);
    }
    up.send(msg, port, serverAddr);
  });
  await new Promise((resolve, reject) => {
    front.once('error', reject);
    front.bind(port, '127.0.0.1', resolve);
  });
  return {
    setLoss(percent) {
      loss = percent;
    },
    counts: () => ({ dropped, passed }),
    close() {
      for (const up of upstreams.values()) up.close();
      front.close();
    },
  };
}
