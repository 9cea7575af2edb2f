#![no_main]
//! Arbitrary RTP payloads through the keyframe detector.

use conclave_media::{VideoCodec, starts_keyframe};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for c in [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264, VideoCodec::Av1] {
        let _ = starts_keyframe(c, data);
    }
});
