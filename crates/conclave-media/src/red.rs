//! RFC 2198 redundant audio (RED), as livekit-client sends Opus: a packet
//! carries the current frame (the primary block) after copies of earlier
//! ones. A subscriber that negotiated RED gets the packets as they are; for
//! one that did not, the primary block is taken out.

use crate::sdp;

/// The primary block of a RED payload, or `None` when the headers are
/// malformed or point beyond the payload.
pub fn primary(payload: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    let mut redundant_len = 0usize;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            // The last header: one byte, the primary block's payload type.
            at += 1;
            break;
        }
        // F=1: payload type (7 bits), timestamp offset (14), block length (10).
        let header = payload.get(at..at + 4)?;
        let len = (usize::from(header[2] & 0x03) << 8) | usize::from(header[3]);
        redundant_len += len;
        at += 4;
    }
    payload.get(at + redundant_len..)
}

/// Rewrites an SDP answer so that, in each audio section whose track (by
/// the offer's `a=msid`) is in `red_tracks`, RED comes first among the
/// formats: the publisher then sends Opus wrapped in RED. Other sections are
/// left as they are.
pub fn prefer_red(answer: &str, offer: &str, red_tracks: &[String]) -> String {
    if red_tracks.is_empty() {
        return answer.to_owned();
    }
    // mid -> track id from the offer.
    let mut tracks: Vec<(&str, &str)> = Vec::new();
    let mut mid = None;
    for line in offer.lines() {
        if line.starts_with("m=") {
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim());
        } else if let (Some(m), Some(msid)) = (mid, line.strip_prefix("a=msid:"))
            && let Some(track) = msid.split_whitespace().nth(1)
        {
            tracks.push((m, track));
        }
    }
    let mut sections = sdp::sections(answer);
    for section in sections.iter_mut().skip(1) {
        let is_audio = sdp::is_audio(section);
        let mid = section
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(str::trim);
        let wanted = mid.is_some_and(|mid| {
            tracks
                .iter()
                .any(|(m, t)| *m == mid && red_tracks.iter().any(|r| r == t))
        });
        if !is_audio || !wanted {
            continue;
        }
        let red_pt = section.iter().find_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (pt, codec) = rest.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("red/")
                .then(|| pt.to_owned())
        });
        let Some(red_pt) = red_pt else { continue };
        let Some(m_line) = section.first_mut() else {
            continue;
        };
        // m=audio <port> <proto> <formats...>
        let mut parts: Vec<&str> = m_line.split(' ').collect();
        if parts.len() < 4 {
            continue;
        }
        let mut formats: Vec<&str> = parts.split_off(3);
        if let Some(i) = formats.iter().position(|f| *f == red_pt) {
            let red = formats.remove(i);
            formats.insert(0, red);
        }
        parts.extend(formats);
        *m_line = parts.join(" ");
    }
    sdp::join(&sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:0\r\n\
        a=msid:s1 mic-track\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:1\r\n\
        a=msid:s2 screen-audio\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=msid:s1 cam\r\n";
    const ANSWER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:0\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\n\
        a=mid:1\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn red_goes_first_only_for_the_tracks_that_want_it() {
        let out = prefer_red(ANSWER, OFFER, &["mic-track".to_owned()]);
        let m: Vec<&str> = out.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=audio 9 UDP/TLS/RTP/SAVPF 63 111",
                "m=audio 9 UDP/TLS/RTP/SAVPF 111 63",
                "m=video 9 UDP/TLS/RTP/SAVPF 96"
            ]
        );
        // Everything else is unchanged.
        assert_eq!(out.replace("63 111", "111 63"), ANSWER);
        assert_eq!(prefer_red(ANSWER, OFFER, &[]), ANSWER);
    }

    /// A RED payload with one redundant block of `red` and primary `prim`.
    fn red_packet(red: &[u8], prim: &[u8]) -> Vec<u8> {
        let len = red.len();
        let mut p = vec![0x80 | 111, 0x03, 0xC0 | ((len >> 8) as u8 & 0x03), len as u8, 111];
        p.extend_from_slice(red);
        p.extend_from_slice(prim);
        p
    }

    #[test]
    fn primary_block_follows_redundant_blocks() {
        let p = red_packet(&[1, 2, 3], &[9, 8, 7, 6]);
        assert_eq!(primary(&p), Some(&[9u8, 8, 7, 6][..]));
        // Only a primary block.
        assert_eq!(primary(&[111, 5, 5]), Some(&[5u8, 5][..]));
        // Two redundant blocks.
        let mut two = vec![0x80 | 111, 0, 0, 2, 0x80 | 111, 0, 0, 1, 111];
        two.extend_from_slice(&[1, 1, 2, 42]);
        assert_eq!(primary(&two), Some(&[42u8][..]));
    }

    #[test]
    fn malformed_red_is_refused() {
        assert_eq!(primary(&[]), None);
        // A header cut short.
        assert_eq!(primary(&[0x80 | 111, 0]), None);
        // A block length beyond the payload.
        assert_eq!(primary(&[0x80 | 111, 0, 0x03, 0xff, 111, 1]), None);
        // No last header.
        assert_eq!(primary(&[0x80 | 111, 0, 0, 0]), None);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"m=audio 9 63 111 a=mid:0 a=msid:s t a=rtpmap:63 red/48000/2 \r\n";
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(p) = primary(&bytes) {
                assert!(p.len() <= bytes.len());
            }
            let text: String = (0..len)
                .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
                .collect();
            let (offer, answer) = text.split_at(text.len() / 2);
            let _ = prefer_red(answer, offer, &["t".to_owned()]);
        }
    }
}
