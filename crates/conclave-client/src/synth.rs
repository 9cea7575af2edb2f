//! Synthetic but valid media for tests, bots and load: Opus-sized audio
//! packets and VP8 frames split into RTP payloads with proper payload
//! descriptors (so an SFU finds keyframes and switches layers), each payload
//! ending in a stamp: the send time in microseconds (on a clock the sender
//! and receiver share) and a counter.

/// Bytes of the stamp at the end of every payload.
pub const STAMP_LEN: usize = 16;

/// Appends the stamp.
pub fn put_stamp(payload: &mut Vec<u8>, sent_micros: u64, counter: u64) {
    payload.extend_from_slice(&sent_micros.to_be_bytes());
    payload.extend_from_slice(&counter.to_be_bytes());
}

/// The stamp at the end of a payload: (send time in microseconds, counter).
pub fn read_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let at = payload.len().checked_sub(STAMP_LEN)?;
    let tail = payload.get(at..)?;
    let (t, c) = tail.split_at(8);
    Some((
        u64::from_be_bytes(t.try_into().ok()?),
        u64::from_be_bytes(c.try_into().ok()?),
    ))
}

/// One Opus packet of `size` bytes (a CELT fullband 20 ms TOC byte, filler,
/// the stamp).
pub fn audio_payload(size: usize, sent_micros: u64, counter: u64) -> Vec<u8> {
    let size = size.max(1 + STAMP_LEN);
    let mut p = Vec::with_capacity(size);
    p.push(0xfc);
    p.resize(size - STAMP_LEN, 0x55);
    put_stamp(&mut p, sent_micros, counter);
    p
}

/// One VP8 frame of about `frame_bytes` as RTP payloads of at most `mtu`
/// bytes. Every payload starts with a VP8 payload descriptor carrying the
/// 15-bit `picture_id`; the first has the start bit and a VP8 frame header
/// (a keyframe header with its start code when `keyframe`). The last
/// payload of the frame is the one to mark.
pub fn vp8_frame(
    keyframe: bool,
    frame_bytes: usize,
    mtu: usize,
    picture_id: u16,
    sent_micros: u64,
    counter: u64,
) -> Vec<Vec<u8>> {
    const DESCRIPTOR: usize = 4;
    let room = mtu.saturating_sub(DESCRIPTOR + STAMP_LEN).max(16);
    let frame_bytes = frame_bytes.max(16);
    let count = frame_bytes.div_ceil(room);
    let pid = picture_id & 0x7fff;
    (0..count)
        .map(|i| {
            let mut p = Vec::with_capacity(mtu);
            // X=1, S on the first packet, PID 0; I=1; 15-bit picture id (M=1).
            p.push(if i == 0 { 0x90 } else { 0x80 });
            p.push(0x80);
            p.push(0x80 | (pid >> 8) as u8);
            p.push(pid as u8);
            let body = room.min(frame_bytes - room * i);
            if i == 0 {
                if keyframe {
                    // show_frame=1, P=0; start code; 1280x720.
                    p.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02]);
                } else {
                    p.extend_from_slice(&[0x11, 0x02, 0x00]);
                }
            }
            p.resize((DESCRIPTOR + body).max(p.len()), 0x55);
            put_stamp(&mut p, sent_micros, counter);
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let p = audio_payload(100, 123_456, 7);
        assert_eq!(p.len(), 100);
        assert_eq!(read_stamp(&p), Some((123_456, 7)));
        assert_eq!(read_stamp(&[1, 2, 3]), None);
    }

    #[test]
    fn frames_split_at_the_mtu_with_descriptors() {
        let f = vp8_frame(true, 10_000, 1200, 300, 9, 1);
        assert!(f.len() >= 9);
        assert!(f.iter().all(|p| p.len() <= 1200));
        assert_eq!(f[0][0], 0x90, "start bit on the first packet");
        assert!(f[1..].iter().all(|p| p[0] == 0x80));
        assert_eq!(f[0][4] & 0x01, 0, "a keyframe header");
        assert_eq!(&f[0][7..10], &[0x9d, 0x01, 0x2a]);
        assert!(f.iter().all(|p| read_stamp(p) == Some((9, 1))));
        let d = vp8_frame(false, 500, 1200, 301, 9, 2);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0][4] & 0x01, 1, "a delta frame header");
        assert_eq!(u16::from(d[0][2] & 0x7f) << 8 | u16::from(d[0][3]), 301);
    }
}
