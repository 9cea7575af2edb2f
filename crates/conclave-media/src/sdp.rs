//! Edits of the SDP the core sends, made on its text: str0m negotiates the
//! same header extensions for audio as for video, and decides by media
//! kind alone.

/// The transport-wide congestion control header extension.
const TWCC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// An SDP cut into its session part (the first) and its media sections,
/// each a list of lines without line endings.
pub(crate) fn sections(sdp: &str) -> Vec<Vec<String>> {
    let mut sections: Vec<Vec<String>> = vec![Vec::new()];
    for line in sdp.lines() {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(last) = sections.last_mut() {
            last.push(line.to_owned());
        }
    }
    sections
}

/// The SDP text of `sections`, every line ended by CRLF.
pub(crate) fn join(sections: &[Vec<String>]) -> String {
    let mut out = sections.concat().join("\r\n");
    if !out.is_empty() {
        out.push_str("\r\n");
    }
    out
}

/// Whether a media section (its lines, the `m=` line first) is audio.
pub(crate) fn is_audio(section: &[String]) -> bool {
    section.first().is_some_and(|m| m.starts_with("m=audio "))
}

/// Takes transport-wide congestion control out of every audio section of
/// an offer or answer the core sends: its `a=extmap` for the extension and
/// its `a=rtcp-fb:<pt> transport-cc` lines. The peer then numbers only video
/// packets for the bandwidth estimate, as LiveKit's own server negotiates.
///
/// Audio's bitrate is small and fixed, so the estimate loses nothing it
/// needs, while every audio packet a connection sends would otherwise be
/// registered and acknowledged in transport-wide feedback: most of what an
/// audio-only subscriber sends back, and about 90 KB of send history on
/// each of its connections.
pub(crate) fn twcc_for_video_only(sdp: &str) -> String {
    let mut sections = sections(sdp);
    for section in sections.iter_mut().skip(1).filter(|s| is_audio(s)) {
        section.retain(|line| !is_twcc_line(line));
    }
    join(&sections)
}

fn is_twcc_line(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix("a=extmap:") {
        // a=extmap:<id>[/<direction>] <uri> [<attributes>]
        return rest.split_whitespace().nth(1) == Some(TWCC_URI);
    }
    if let Some(rest) = line.strip_prefix("a=rtcp-fb:") {
        return rest.split_whitespace().nth(1) == Some("transport-cc");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\na=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=rtcp-fb:111 nack\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 transport-cc\r\n";

    #[test]
    fn audio_sections_lose_transport_wide_cc_and_video_keeps_it() {
        let out = twcc_for_video_only(SDP);
        let expected = SDP
            .replacen(
                "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n",
                "",
                1,
            )
            .replacen("a=rtcp-fb:111 transport-cc\r\n", "", 1);
        assert_eq!(out, expected);
        // The video section keeps both lines.
        let video = &out[out.find("m=video").expect("video section")..];
        assert!(video.contains(TWCC_URI));
        assert!(video.contains("a=rtcp-fb:96 transport-cc"));
        // Applying it again changes nothing.
        assert_eq!(twcc_for_video_only(&out), out);
    }

    #[test]
    fn other_lines_and_a_direction_on_the_extmap_are_read_right() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=extmap:5/sendrecv http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
            a=extmap:6 http://example.invalid/transport-cc\r\na=rtcp-fb:111 nack pli\r\n";
        assert_eq!(
            twcc_for_video_only(sdp),
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=extmap:6 http://example.invalid/transport-cc\r\na=rtcp-fb:111 nack pli\r\n"
        );
        // Garbage passes through as it is.
        assert_eq!(twcc_for_video_only("x\r\n"), "x\r\n");
        assert_eq!(twcc_for_video_only(""), "");
    }
}
