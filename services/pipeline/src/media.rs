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
    /// `image/heic` or `image/heif`: HEIF with HEVC-coded images (phone cameras); stored as JPEG.
    Heic,
    /// `image/tiff` (also declared as `image/tif`): scans and faxes; stored as PDF.
    Tiff,
    /// `image/gif`; stored as a PNG of its first frame.
    Gif,
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
            "image/heic" | "image/heif" => Some(MediaType::Heic),
            "image/tiff" | "image/tif" => Some(MediaType::Tiff),
            "image/gif" => Some(MediaType::Gif),
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
            MediaType::Heic => "image/heic",
            MediaType::Tiff => "image/tiff",
            MediaType::Gif => "image/gif",
        }
    }

    /// The type an upload of this type is stored as when it is kept rather than converted to
    /// WebP: HEIC becomes JPEG, TIFF becomes PDF and GIF becomes PNG, forms every viewer opens;
    /// the others are stored as they are.
    pub fn stored_as(self) -> MediaType {
        match self {
            MediaType::Heic => MediaType::Jpeg,
            MediaType::Tiff => MediaType::Pdf,
            MediaType::Gif => MediaType::Png,
            other => other,
        }
    }

    /// The file extension used in object keys.
    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Pdf => "pdf",
            MediaType::Jpeg => "jpg",
            MediaType::Png => "png",
            MediaType::Webp => "webp",
            MediaType::Heic => "heic",
            MediaType::Tiff => "tif",
            MediaType::Gif => "gif",
        }
    }
}

/// `ftyp` brands of HEIF files whose images are HEVC-coded (ISO/IEC 23008-12, Annex B).
const HEVC_BRANDS: [&[u8; 4]; 6] = [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"];

/// Brands of HEIF files that do not say how their images are coded.
const GENERIC_HEIF_BRANDS: [&[u8; 4]; 3] = [b"mif1", b"msf1", b"mif2"];

/// Brands of AVIF (AV1-coded HEIF), which is not an accepted type.
const AV1_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// True for an ISO-BMFF file whose first box is `ftyp` with a HEVC brand as its major brand, or a
/// generic HEIF major brand without an AV1 brand among the compatible ones (an iPhone writes
/// `heic`; others write `mif1` with `heic` compatible).
fn is_heif(prefix: &[u8]) -> bool {
    if prefix.len() < 12 || &prefix[4..8] != b"ftyp" {
        return false;
    }
    let brand = |b: &[u8]| -> [u8; 4] { [b[0], b[1], b[2], b[3]] };
    let major = brand(&prefix[8..12]);
    if HEVC_BRANDS.contains(&&major) {
        return true;
    }
    if !GENERIC_HEIF_BRANDS.contains(&&major) {
        return false;
    }
    // Compatible brands follow the minor version, up to the end of the box (or of the prefix).
    let size = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let end = size.clamp(16, 16 + 4 * 64).min(prefix.len());
    let compatible: Vec<[u8; 4]> = prefix
        .get(16..end)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(brand)
        .collect();
    let hevc = compatible.iter().any(|b| HEVC_BRANDS.contains(&b));
    let av1 = compatible.iter().any(|b| AV1_BRANDS.contains(&b));
    hevc || !av1
}

/// How many bytes of leading junk may precede a PDF header (readers tolerate some).
const PDF_HEADER_OFFSET: usize = 1024;

/// Identifies the type from its magic bytes; `None` if it is none of the accepted types.
/// A prefix of 16 bytes is enough (a HEIF's compatible brands are read as far as the prefix
/// reaches, which 64 bytes covers for every camera seen), except for a PDF header behind leading junk, which is found
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
    if prefix.starts_with(b"II*\0") || prefix.starts_with(b"MM\0*") {
        return Some(MediaType::Tiff);
    }
    // BigTIFF (version 43) is a TIFF too; whether it is read is the converter's answer.
    if prefix.starts_with(b"II+\0") || prefix.starts_with(b"MM\0+") {
        return Some(MediaType::Tiff);
    }
    if prefix.starts_with(b"GIF87a") || prefix.starts_with(b"GIF89a") {
        return Some(MediaType::Gif);
    }
    if is_heif(prefix) {
        return Some(MediaType::Heic);
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
        assert_eq!(MediaType::from_declared("image/gif"), Some(MediaType::Gif));
        assert_eq!(
            MediaType::from_declared("image/HEIF"),
            Some(MediaType::Heic)
        );
        assert_eq!(
            MediaType::from_declared("image/heic"),
            Some(MediaType::Heic)
        );
        assert_eq!(MediaType::from_declared("image/tif"), Some(MediaType::Tiff));
        assert_eq!(
            MediaType::from_declared("image/tiff"),
            Some(MediaType::Tiff)
        );
        assert_eq!(MediaType::from_declared("image/avif"), None);
        assert_eq!(MediaType::from_declared("image/bmp"), None);
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
        assert_eq!(sniff(b"GIF89a......."), Some(MediaType::Gif));
        assert_eq!(sniff(b"GIF87a......."), Some(MediaType::Gif));
        assert_eq!(sniff(b"GIF88a......."), None);
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), Some(MediaType::Tiff));
        assert_eq!(sniff(b"MM\0*\0\0\0\x08"), Some(MediaType::Tiff));
        assert_eq!(sniff(b"II+\0\x08\0\0\0"), Some(MediaType::Tiff));
        assert_eq!(sniff(b"MM*\0\0\0\0\x08"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(&[0u8; 64]), None);
    }

    /// An `ftyp` box of `major` with `compatible` brands.
    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len() as u32;
        let mut out = size.to_be_bytes().to_vec();
        out.extend_from_slice(b"ftyp");
        out.extend_from_slice(major);
        out.extend_from_slice(&[0, 0, 0, 0]);
        for brand in compatible {
            out.extend_from_slice(*brand);
        }
        out
    }

    #[test]
    fn heif_is_told_by_its_brands_and_avif_is_not_heif() {
        for major in [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"] {
            assert_eq!(sniff(&ftyp(major, &[b"mif1"])), Some(MediaType::Heic));
        }
        assert_eq!(
            sniff(&ftyp(b"mif1", &[b"mif1", b"heic"])),
            Some(MediaType::Heic)
        );
        assert_eq!(sniff(&ftyp(b"msf1", &[b"msf1"])), Some(MediaType::Heic));
        assert_eq!(sniff(&ftyp(b"mif1", &[b"mif1", b"avif"])), None);
        assert_eq!(sniff(&ftyp(b"avif", &[b"mif1", b"heic"])), None);
        assert_eq!(sniff(&ftyp(b"isom", &[b"mp41"])), None);
        assert_eq!(sniff(&ftyp(b"heic", &[])[..11]), None);
    }

    #[test]
    fn a_pdf_header_may_follow_up_to_1024_bytes_of_junk() {
        let behind = |junk: usize| [vec![b' '; junk], b"%PDF-1.7\n".to_vec()].concat();
        assert_eq!(sniff(&behind(1024)), Some(MediaType::Pdf));
        assert_eq!(sniff(&behind(1025)), None);
    }
}
