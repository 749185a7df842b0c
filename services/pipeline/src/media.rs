//! Accepted media types: parsing declared `Content-Type`s and sniffing magic bytes.

/// Accepted media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// `application/pdf`
    Pdf,
    /// `image/jpeg` (also declared as `image/jpg` or `image/pjpeg`)
    Jpeg,
    /// `image/png`
    Png,
    /// `image/webp`
    Webp,
}

impl MediaType {
    /// Parses a declared Content-Type: case-insensitive, parameters and whitespace ignored;
    /// `image/jpg` and `image/pjpeg` are aliases of JPEG. `None` for anything else.
    pub fn from_declared(content_type: &str) -> Option<MediaType> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/pdf" => Some(MediaType::Pdf),
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(MediaType::Jpeg),
            "image/png" => Some(MediaType::Png),
            "image/webp" => Some(MediaType::Webp),
            _ => None,
        }
    }

    /// The canonical MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            MediaType::Pdf => "application/pdf",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Webp => "image/webp",
        }
    }

    /// The file extension used in object keys.
    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Pdf => "pdf",
            MediaType::Jpeg => "jpg",
            MediaType::Png => "png",
            MediaType::Webp => "webp",
        }
    }
}

/// How many bytes of leading junk may precede a PDF header (readers tolerate some).
const PDF_HEADER_OFFSET: usize = 1024;

/// Identifies the type from its magic bytes; `None` if it is none of the accepted types.
/// A prefix of 16 bytes is enough, except for a PDF header behind leading junk, which is found
/// only if the prefix reaches it (at most 1024 bytes in).
pub fn sniff(prefix: &[u8]) -> Option<MediaType> {
    if prefix.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(MediaType::Jpeg);
    }
    if prefix.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Some(MediaType::Png);
    }
    if prefix.len() >= 12 && &prefix[..4] == b"RIFF" && &prefix[8..12] == b"WEBP" {
        return Some(MediaType::Webp);
    }
    let window = &prefix[..prefix.len().min(PDF_HEADER_OFFSET + 5)];
    if window.windows(5).any(|w| w == b"%PDF-") {
        return Some(MediaType::Pdf);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_are_parsed_loosely_but_only_accepted_ones_match() {
        assert_eq!(MediaType::from_declared("image/jpg"), Some(MediaType::Jpeg));
        assert_eq!(
            MediaType::from_declared(" Image/JPEG ; q=1"),
            Some(MediaType::Jpeg)
        );
        assert_eq!(
            MediaType::from_declared("image/pjpeg"),
            Some(MediaType::Jpeg)
        );
        assert_eq!(MediaType::from_declared("IMAGE/PNG"), Some(MediaType::Png));
        assert_eq!(
            MediaType::from_declared("image/webp;x=1"),
            Some(MediaType::Webp)
        );
        assert_eq!(
            MediaType::from_declared("application/pdf"),
            Some(MediaType::Pdf)
        );
        assert_eq!(MediaType::from_declared("image/gif"), None);
        assert_eq!(MediaType::from_declared(""), None);
    }

    #[test]
    fn magic_bytes_identify_each_type_and_nothing_else() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Some(MediaType::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(MediaType::Png)
        );
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(MediaType::Webp));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some(MediaType::Pdf));
        assert_eq!(sniff(b"\n\n  %PDF-1.4\n"), Some(MediaType::Pdf));
        assert_eq!(sniff(b"GIF89a......."), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(&[0u8; 64]), None);
    }

    #[test]
    fn a_pdf_header_may_follow_up_to_1024_bytes_of_junk() {
        let behind = |junk: usize| [vec![b' '; junk], b"%PDF-1.7\n".to_vec()].concat();
        assert_eq!(sniff(&behind(1024)), Some(MediaType::Pdf));
        assert_eq!(sniff(&behind(1025)), None);
    }
}
