// WebRTC video statistics of a test page (its peer connections are recorded
// by browser.mjs), for tests that look at layers, freezes and repair.

/**
 * Inbound video summed over the page's peer connections, plus the widest
 * frame. Counters that Chromium does not report stay 0.
 */
export async function videoInbound(page) {
  return page.evaluate(async () => {
    const out = {
      width: 0,
      height: 0,
      decoded: 0,
      packets: 0,
      lost: 0,
      nacks: 0,
      plis: 0,
      firs: 0,
      retransmitted: 0,
      keyFrames: 0,
      freezes: 0,
      freezeSeconds: 0,
      dropped: 0,
      streams: 0,
    };
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
        out.streams++;
        if ((s.frameWidth ?? 0) > out.width) {
          out.width = s.frameWidth;
          out.height = s.frameHeight ?? 0;
        }
        out.decoded += s.framesDecoded ?? 0;
        out.packets += s.packetsReceived ?? 0;
        out.lost += s.packetsLost ?? 0;
        out.nacks += s.nackCount ?? 0;
        out.plis += s.pliCount ?? 0;
        out.firs += s.firCount ?? 0;
        out.retransmitted += s.retransmittedPacketsReceived ?? 0;
        out.keyFrames += s.keyFramesDecoded ?? 0;
        out.freezes += s.freezeCount ?? 0;
        out.freezeSeconds += s.totalFreezesDuration ?? 0;
        out.dropped += s.framesDropped ?? 0;
      });
    }
    return out;
  });
}

/** The page's outbound video encodings (simulcast layers): rid, size, bytes, fps. */
export async function videoOutbound(page) {
  return page.evaluate(async () => {
    const layers = [];
    for (const pc of window.__pcs ?? []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
        layers.push({
          rid: s.rid ?? '',
          width: s.frameWidth ?? 0,
          height: s.frameHeight ?? 0,
          fps: s.framesPerSecond ?? 0,
          bytes: s.bytesSent ?? 0,
          active: s.active ?? true,
          limitation: s.qualityLimitationReason ?? '',
        });
      });
    }
    return layers.sort((a, b) => a.width - b.width);
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
