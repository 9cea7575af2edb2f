//! Log redaction: IP addresses and access tokens never reach the log.
//!
//! Every log line passes through [`redact`] before it is written, whatever
//! code (ours or a dependency's) produced it.

use std::io::{self, Write};

/// Replaces IPv4 and IPv6 addresses with `<ip>` and JSON Web Tokens with
/// `<token>`.
pub fn redact(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !is_word(b[i - 1]);
        if boundary {
            if let Some(n) = jwt_len(&b[i..]) {
                out.push_str("<token>");
                i += n;
                continue;
            }
            if let Some(n) = ipv4_len(&b[i..]).or_else(|| ipv6_len(&b[i..])) {
                out.push_str("<ip>");
                i += n;
                continue;
            }
        }
        // Copy one whole UTF-8 character.
        let ch_len = line[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&line[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b':' || c == b'-'
}

fn jwt_len(b: &[u8]) -> Option<usize> {
    if !b.starts_with(b"eyJ") {
        return None;
    }
    let mut dots = 0;
    let mut n = 0;
    while n < b.len() {
        let c = b[n];
        if c == b'.' {
            dots += 1;
        } else if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'=') {
            break;
        }
        n += 1;
    }
    (dots >= 2).then_some(n)
}

fn ipv4_len(b: &[u8]) -> Option<usize> {
    let mut n = 0;
    for part in 0..4 {
        let start = n;
        while n < b.len() && b[n].is_ascii_digit() && n - start < 3 {
            n += 1;
        }
        if n == start {
            return None;
        }
        if part < 3 {
            if b.get(n) != Some(&b'.') {
                return None;
            }
            n += 1;
        }
    }
    if b.get(n).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(n)
}

fn ipv6_len(b: &[u8]) -> Option<usize> {
    let mut n = 0;
    let mut colons = 0;
    let mut hex = 0;
    while n < b.len() {
        let c = b[n];
        if c == b':' {
            colons += 1;
        } else if c.is_ascii_hexdigit() {
            hex += 1;
        } else if c == b'.' && colons >= 2 {
            // Embedded IPv4 tail.
            n += 1;
            continue;
        } else {
            break;
        }
        n += 1;
    }
    // Trailing ":port" style separators are not part of the address.
    while n > 0 && b[n - 1] == b':' && colons > 0 {
        n -= 1;
        colons -= 1;
    }
    let compressed = b[..n].windows(2).any(|w| w == b"::");
    ((compressed || colons == 7) && hex >= 1 && n >= 3).then_some(n)
}

/// A writer that redacts whole lines before passing them on.
pub struct RedactingWriter<W: Write> {
    inner: W,
}

impl<W: Write> RedactingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner }
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_removed() {
        assert_eq!(redact("from 192.168.1.20:5000 ok"), "from <ip>:5000 ok");
        assert_eq!(redact("peer [2001:db8::1]:443"), "peer [<ip>]:443");
        assert_eq!(redact("peer ::1 left"), "peer <ip> left");
        assert_eq!(redact("v1.2.3 build"), "v1.2.3 build");
        assert_eq!(redact("time 12:30:45"), "time 12:30:45");
    }

    #[test]
    fn tokens_are_removed() {
        let line = "url=/rtc?access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl&x=1";
        assert_eq!(redact(line), "url=/rtc?access_token=<token>&x=1");
    }

    #[test]
    fn keeps_other_text_and_unicode() {
        assert_eq!(redact("Räume: 3, Teilnehmer: 7"), "Räume: 3, Teilnehmer: 7");
    }
}
