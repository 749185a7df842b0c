//! JPEG headers read by hand, before any decoder sees the file: the size for the pixel cap,
//! whether a JPEG is complete, and what a PDF image dictionary needs to embed a JPEG
//! as-is (component count, Adobe marker).

/// What a PDF image dictionary needs to know about a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegLayout {
    pub width: u32,
    pub height: u32,
    /// Colour components (1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK).
    pub components: u8,
    /// An Adobe APP14 marker is present (its CMYK is stored inverted).
    pub adobe: bool,
    /// Progressive: the decoder keeps every coefficient (2 bytes a sample) until the end.
    pub progressive: bool,
}

/// Marker segments up to and including the first scan header, as `(marker, payload, end)`
/// where `end` is the offset just past the segment; stops early at anything malformed.
fn segments(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8], usize)> {
    let mut at = if bytes.starts_with(&[0xFF, 0xD8]) {
        2
    } else {
        usize::MAX
    };
    std::iter::from_fn(move || {
        // Fill bytes (extra 0xFF) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if bytes.get(at) != Some(&0xFF) {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let end = at + 2 + length;
        let payload = bytes.get(at + 4..end)?;
        at = if marker == 0xDA { usize::MAX } else { end };
        Some((marker, payload, end))
    })
}

/// Reads the first frame header; `None` if there is none before the scan data.
pub(crate) fn jpeg_layout(bytes: &[u8]) -> Option<JpegLayout> {
    let mut adobe = false;
    for (marker, payload, _) in segments(bytes) {
        match marker {
            0xEE if payload.starts_with(b"Adobe") => adobe = true,
            // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC) which share the range.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let [_, h0, h1, w0, w1, components, ..] = *payload else {
                    return None;
                };
                return Some(JpegLayout {
                    width: u32::from(u16::from_be_bytes([w0, w1])),
                    height: u32::from(u16::from_be_bytes([h0, h1])),
                    components,
                    adobe,
                    progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                });
            }
            _ => {}
        }
    }
    None
}

/// True if the first scan is followed by an end-of-image marker, i.e. the file is not truncated.
/// The JPEG decoder fills a truncated scan with grey instead of failing, so this is checked here.
pub(crate) fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let scan = segments(bytes).find_map(|(marker, _, end)| (marker == 0xDA).then_some(end));
    // Entropy-coded data stuffs every 0xFF, so 0xFF 0xD9 after the scan header is the real EOI.
    // Searched from the end, where a complete file has it.
    scan.is_some_and(|end| memchr::memmem::rfind(&bytes[end..], &[0xFF, 0xD9]).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an optional Adobe APP14 segment, and a baseline frame header of `components`.
    fn header(components: u8, adobe: bool) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        if adobe {
            out.extend_from_slice(&[0xFF, 0xEE, 0, 14]);
            out.extend_from_slice(b"Adobe\0\x64\0\0\0\0\x02");
        }
        let length = 8 + 3 * u16::from(components);
        out.extend_from_slice(&[0xFF, 0xC0]);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&[8, 0x01, 0x2C, 0x02, 0x58, components]); // 600 x 300
        for id in 1..=components {
            out.extend_from_slice(&[id, 0x11, 0]);
        }
        out
    }

    #[test]
    fn the_frame_header_gives_size_components_and_adobe_marker() {
        let layout = jpeg_layout(&header(4, true));
        assert_eq!(
            layout,
            Some(JpegLayout {
                width: 600,
                height: 300,
                components: 4,
                adobe: true,
                progressive: false,
            })
        );
        let layout = jpeg_layout(&header(1, false));
        assert_eq!(
            layout,
            Some(JpegLayout {
                width: 600,
                height: 300,
                components: 1,
                adobe: false,
                progressive: false,
            })
        );
    }

    #[test]
    fn malformed_or_short_headers_give_nothing() {
        assert_eq!(jpeg_layout(b""), None);
        assert_eq!(jpeg_layout(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), None);
        assert_eq!(jpeg_layout(&header(3, false)[..12]), None);
        // A segment length of zero must not loop forever.
        assert_eq!(
            jpeg_layout(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0xFF, 0xD9]),
            None
        );
        assert!(!jpeg_is_complete(&header(3, false)));
    }
}
