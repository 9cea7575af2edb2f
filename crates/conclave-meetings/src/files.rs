//! Which shared files are accepted: by content and by name, both must agree.

/// A type of file that may be shared, with its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub media_type: &'static str,
    extensions: &'static [&'static str],
}

const PDF: FileType = FileType {
    media_type: "application/pdf",
    extensions: &["pdf"],
};
const PNG: FileType = FileType {
    media_type: "image/png",
    extensions: &["png"],
};
const JPEG: FileType = FileType {
    media_type: "image/jpeg",
    extensions: &["jpg", "jpeg"],
};
const GIF: FileType = FileType {
    media_type: "image/gif",
    extensions: &["gif"],
};
const WEBP: FileType = FileType {
    media_type: "image/webp",
    extensions: &["webp"],
};
const TEXT: FileType = FileType {
    media_type: "text/plain; charset=utf-8",
    extensions: &["txt", "md", "csv"],
};
const OFFICE: [(&str, &str); 6] = [
    ("odt", "application/vnd.oasis.opendocument.text"),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("odp", "application/vnd.oasis.opendocument.presentation"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
];

/// Longest file name kept, in characters.
pub const MAX_NAME: usize = 200;

/// Why a file is refused. Texts are safe to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FileRefusal {
    #[error("the file is empty")]
    Empty,
    #[error("the file is too large")]
    TooLarge,
    #[error("the file name is not valid")]
    BadName,
    #[error("this type of file cannot be shared (PDF, images, text and office documents can)")]
    Type,
}

/// Cleans a file name: the last path part, no control or path characters,
/// at most [`MAX_NAME`] characters.
pub fn clean_name(raw: &str) -> Result<String, FileRefusal> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '|' | '?' | '*'))
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME || !name.contains('.') {
        return Err(FileRefusal::BadName);
    }
    Ok(name)
}

/// The type of a file from its first bytes and its name; both must name
/// the same allowed type.
pub fn check(name: &str, data: &[u8], max_bytes: usize) -> Result<FileType, FileRefusal> {
    if data.is_empty() {
        return Err(FileRefusal::Empty);
    }
    if data.len() > max_bytes {
        return Err(FileRefusal::TooLarge);
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .ok_or(FileRefusal::BadName)?;
    let by_content = sniff(data).ok_or(FileRefusal::Type)?;
    if let Some(t) = by_content {
        return if t.extensions.contains(&ext.as_str()) {
            Ok(t)
        } else {
            Err(FileRefusal::Type)
        };
    }
    // A ZIP container: the office formats.
    OFFICE
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, media_type)| FileType {
            media_type,
            extensions: &[],
        })
        .ok_or(FileRefusal::Type)
}

/// `Some(Some(t))` for a recognised type, `Some(None)` for a ZIP
/// container, `None` for anything else.
fn sniff(data: &[u8]) -> Option<Option<FileType>> {
    let starts = |m: &[u8]| data.starts_with(m);
    if starts(b"%PDF-") {
        return Some(Some(PDF));
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(Some(PNG));
    }
    if starts(b"\xff\xd8\xff") {
        return Some(Some(JPEG));
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(Some(GIF));
    }
    if data.len() >= 12 && starts(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        return Some(Some(WEBP));
    }
    if starts(b"PK\x03\x04") {
        return Some(None);
    }
    // Text: valid UTF-8 without control characters other than whitespace.
    let text = std::str::from_utf8(data).ok()?;
    if text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
    {
        return Some(Some(TEXT));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_and_name_must_agree() {
        assert_eq!(
            check("a.pdf", b"%PDF-1.7 ...", 100).map(|t| t.media_type),
            Ok("application/pdf")
        );
        assert_eq!(
            check("notes.TXT", b"hello\nworld", 100).map(|t| t.media_type),
            Ok(TEXT.media_type)
        );
        assert!(check("a.docx", b"PK\x03\x04rest", 100).is_ok());
        // A script named as a picture, a picture named as a page, an executable.
        assert_eq!(
            check("x.png", b"<script>alert(1)</script>", 100),
            Err(FileRefusal::Type)
        );
        assert_eq!(check("x.html", b"\x89PNG\r\n\x1a\n", 100), Err(FileRefusal::Type));
        assert_eq!(check("x.txt", b"MZ\x90\x00\x03\x00", 100), Err(FileRefusal::Type));
        assert_eq!(check("x.html", b"<html></html>", 100), Err(FileRefusal::Type));
        assert_eq!(check("x.zip", b"PK\x03\x04", 100), Err(FileRefusal::Type));
        assert_eq!(check("x.pdf", b"", 100), Err(FileRefusal::Empty));
        assert_eq!(check("x.pdf", &[b'%'; 101], 100), Err(FileRefusal::TooLarge));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("../../etc/report.pdf").as_deref(), Ok("report.pdf"));
        assert_eq!(clean_name("C:\\tmp\\a\"b.pdf").as_deref(), Ok("ab.pdf"));
        assert_eq!(clean_name(".hidden.txt").as_deref(), Ok("hidden.txt"));
        assert!(clean_name("noext").is_err());
        assert!(clean_name("\u{1}\u{2}").is_err());
        assert!(clean_name(&format!("{}.pdf", "a".repeat(300))).is_err());
    }

    #[test]
    fn no_input_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let data: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            let name = String::from_utf8_lossy(&data).into_owned();
            let _ = check(&name, &data, 32);
            let _ = clean_name(&name);
        }
    }
}
