#![no_main]
//! What a participant or host sends the meetings API: arbitrary bytes as a
//! shared file under an arbitrary name, and as a meeting's settings.

use conclave_meetings::{MeetingSpec, check_shared_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (name, content) = data.split_at(split);
    if let Ok((clean, _)) = check_shared_file(&String::from_utf8_lossy(name), content, 4096) {
        assert!(!clean.contains('/') && !clean.contains('\\'));
        assert!(content.len() <= 4096 && !content.is_empty());
    }
    if let Ok(spec) = serde_json::from_slice::<MeetingSpec>(data) {
        let _ = spec.validate();
    }
});
