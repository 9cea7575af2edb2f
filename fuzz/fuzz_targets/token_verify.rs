#![no_main]
//! Arbitrary bytes as an access token: never a panic, never accepted
//! without the right signature.

use conclave_token::{ApiKey, ApiSecret, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut v = Verifier::new();
    let _ = v.insert(ApiKey::new("APIfuzz"), ApiSecret::new("0123456789abcdef0123456789abcdef"));
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(claims) = v.verify(text, 1_800_000_000) {
            let _ = claims.join_grant(None);
        }
    }
});
