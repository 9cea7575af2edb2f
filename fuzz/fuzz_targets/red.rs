#![no_main]
//! Arbitrary RED payloads through the primary-block reader, and arbitrary
//! text as SDP offer and answer through the RED preference rewrite.

use conclave_media::{prefer_red, red_primary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(primary) = red_primary(data) {
        assert!(primary.len() <= data.len());
    }
    let text = String::from_utf8_lossy(data);
    let half = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i);
    let (offer, answer) = text.split_at(half);
    let tracks: Vec<String> = offer.split_whitespace().take(4).map(str::to_owned).collect();
    let _ = prefer_red(answer, offer, &tracks);
});
