//! Just enough STUN (RFC 8489) to route a connectivity check to its peer
//! connection: the local part of the USERNAME attribute. Reads untrusted
//! bytes and never panics.

const HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const USERNAME: u16 = 0x0006;

/// The receiver's ICE username fragment (before the colon) of a STUN
/// binding request, if `buf` is one.
pub fn local_ufrag(buf: &[u8]) -> Option<&str> {
    if buf.len() < HEADER || buf[0] & 0xc0 != 0 || buf[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let body = buf.get(HEADER..HEADER + length)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + len)?;
        if kind == USERNAME {
            let text = std::str::from_utf8(value).ok()?;
            return text.split(':').next().filter(|u| !u.is_empty());
        }
        // Attributes are padded to four bytes.
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0024u16.to_be_bytes()); // PRIORITY first
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 1]);
        attrs.extend_from_slice(&USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_the_local_ufrag() {
        assert_eq!(local_ufrag(&request(b"srvA:cli1")), Some("srvA"));
        assert_eq!(local_ufrag(&request(b"x:y")), Some("x"));
        assert_eq!(local_ufrag(&request(b":y")), None);
    }

    #[test]
    fn refuses_other_datagrams() {
        assert_eq!(local_ufrag(&[]), None);
        assert_eq!(local_ufrag(&[0x16; 40]), None, "DTLS");
        assert_eq!(local_ufrag(&[0x80; 40]), None, "RTP");
        let mut truncated = request(b"srvA:cli1");
        truncated.truncate(26);
        assert_eq!(local_ufrag(&truncated), None);
        let mut lying = request(b"srvA:cli1");
        lying[3] = 0xff;
        assert_eq!(local_ufrag(&lying), None);
    }
}
