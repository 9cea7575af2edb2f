//! Keyframe detection from RTP payload descriptors.
//!
//! Only the codec's RTP payload descriptor and, for VP8 and H.264, the first
//! header byte of the frame are read. These bytes stay in clear text under
//! end-to-end frame encryption, so detection keeps working when the media
//! itself is unreadable to the server. Every function takes untrusted bytes
//! and never panics.

/// The codecs whose keyframes can be recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Av1,
    Other,
}

/// Whether `payload` is the first packet of a keyframe.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8(payload),
        VideoCodec::Vp9 => vp9(payload),
        VideoCodec::H264 => h264(payload),
        VideoCodec::Av1 => av1(payload),
        VideoCodec::Other => false,
    }
}

/// RFC 7741 payload descriptor, then the VP8 frame tag (RFC 6386 9.1).
fn vp8(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID, one or two bytes.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/KEYIDX
        }
    }
    // Frame tag: bit 0 clear means keyframe.
    p.get(i).is_some_and(|b| b & 0x01 == 0)
}

/// The fields of a VP8 payload descriptor that must stay continuous within
/// one forwarded stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Ids {
    /// PictureID and whether it is the 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    pub tl0_pic_idx: Option<u8>,
}

/// Reads the PictureID and TL0PICIDX of a VP8 payload descriptor (RFC 7741).
pub fn vp8_ids(p: &[u8]) -> Option<Vp8Ids> {
    let first = *p.first()?;
    let mut ids = Vp8Ids {
        picture_id: None,
        tl0_pic_idx: None,
    };
    if first & 0x80 == 0 {
        return Some(ids);
    }
    let x = *p.get(1)?;
    let mut i = 2;
    if x & 0x80 != 0 {
        let b = *p.get(i)?;
        if b & 0x80 != 0 {
            let lo = *p.get(i + 1)?;
            ids.picture_id = Some(((u16::from(b & 0x7f) << 8) | u16::from(lo), true));
            i += 2;
        } else {
            ids.picture_id = Some((u16::from(b), false));
            i += 1;
        }
    }
    if x & 0x40 != 0 {
        ids.tl0_pic_idx = Some(*p.get(i)?);
    }
    Some(ids)
}

/// RFC 9628 payload descriptor: not inter-predicted, start of frame, and
/// the lowest spatial layer.
fn vp9(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    let inter_predicted = first & 0x40 != 0;
    let begins_frame = first & 0x08 != 0;
    if inter_predicted || !begins_frame {
        return false;
    }
    let has_layer = first & 0x20 != 0;
    if !has_layer {
        return true;
    }
    let picture_id = first & 0x80 != 0;
    let mut i = 1;
    if picture_id {
        let Some(&pid) = p.get(i) else { return false };
        i += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    // Layer index: spatial id in bits 1..3.
    p.get(i).is_some_and(|l| (l >> 1) & 0x07 == 0)
}

/// RFC 6184: an IDR slice or a sequence parameter set, alone, aggregated
/// (STAP-A) or at the start of a fragmentation unit (FU-A).
fn h264(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    let is_key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    match first & 0x1f {
        24 => {
            // STAP-A: 16-bit size, then the NAL unit.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let Some(&nal) = p.get(i + 2) else { return false };
                if is_key(nal & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        t => is_key(t),
    }
}

/// AV1 RTP aggregation header: the N bit starts a new coded video sequence.
fn av1(p: &[u8]) -> bool {
    p.first().is_some_and(|h| h & 0x08 != 0 && h & 0x80 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_and_delta() {
        // Extended descriptor with 15-bit picture id, S=1, PID=0; frame tag 0x10 (key).
        let key = [0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00];
        assert!(starts_keyframe(VideoCodec::Vp8, &key));
        let delta = [0x90, 0x80, 0x81, 0x23, 0x11, 0x02, 0x00];
        assert!(!starts_keyframe(VideoCodec::Vp8, &delta));
        // Continuation packet of a keyframe: S=0.
        let cont = [0x80, 0x80, 0x81, 0x23, 0x10];
        assert!(!starts_keyframe(VideoCodec::Vp8, &cont));
        // Short descriptor.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x00]));
    }

    #[test]
    fn vp8_descriptor_ids() {
        // X, I (15-bit picture id 0x0123), L (TL0PICIDX 9), T/K.
        let p = [0x90, 0xe0, 0x81, 0x23, 0x09, 0x20, 0x10];
        assert_eq!(
            vp8_ids(&p),
            Some(Vp8Ids {
                picture_id: Some((0x0123, true)),
                tl0_pic_idx: Some(9)
            })
        );
        // 7-bit picture id only.
        assert_eq!(
            vp8_ids(&[0x90, 0x80, 0x05, 0x10]),
            Some(Vp8Ids {
                picture_id: Some((5, false)),
                tl0_pic_idx: None
            })
        );
        // No extension.
        assert_eq!(
            vp8_ids(&[0x10, 0x00]),
            Some(Vp8Ids {
                picture_id: None,
                tl0_pic_idx: None
            })
        );
        assert_eq!(vp8_ids(&[0x90, 0x80]), None, "truncated");
    }

    #[test]
    fn h264_forms() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a]));
        // STAP-A carrying SPS.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]
        ));
        // FU-A start of IDR.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(starts_keyframe(VideoCodec::Vp9, &[0x08]));
        assert!(!starts_keyframe(VideoCodec::Vp9, &[0x48]));
        assert!(starts_keyframe(VideoCodec::Av1, &[0x08]));
        assert!(!starts_keyframe(VideoCodec::Av1, &[0x00]));
    }

    #[test]
    fn never_panics_on_short_or_random_input() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..64 {
            for _ in 0..200 {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                for c in [
                    VideoCodec::Vp8,
                    VideoCodec::Vp9,
                    VideoCodec::H264,
                    VideoCodec::Av1,
                ] {
                    let _ = starts_keyframe(c, &buf);
                }
            }
        }
    }
}
