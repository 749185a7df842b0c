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
    /// The decoder keeps every coefficient until the end: the image is progressive, or its first
    /// scan does not hold every component (or no scan header was found).
    pub buffered: bool,
    /// Bytes of libjpeg's whole-image coefficient arrays if `buffered`: 128 bytes (64 16-bit
    /// coefficients) per 8x8 block of each component, padded to whole MCUs as libjpeg pads them.
    pub coefficient_bytes: u64,
}

/// 64 coefficients of 2 bytes.
const BLOCK_BYTES: u64 = 128;

/// Bytes of the coefficient arrays of a frame of `width` x `height` whose components have the
/// sampling factors `factors` (`(h, v)` each, 1 to 4).
fn coefficient_bytes(width: u32, height: u32, factors: &[(u8, u8)]) -> u64 {
    let h_max = factors
        .iter()
        .map(|f| u64::from(f.0))
        .max()
        .unwrap_or(1)
        .max(1);
    let v_max = factors
        .iter()
        .map(|f| u64::from(f.1))
        .max()
        .unwrap_or(1)
        .max(1);
    let mcus_across = u64::from(width).div_ceil(8 * h_max);
    let mcus_down = u64::from(height).div_ceil(8 * v_max);
    factors
        .iter()
        .map(|&(h, v)| mcus_across * u64::from(h.max(1)) * mcus_down * u64::from(v.max(1)))
        .sum::<u64>()
        * BLOCK_BYTES
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

/// Reads the first frame header, and the first scan header after it; `None` if there is no frame
/// header before the scan data.
pub(crate) fn jpeg_layout(bytes: &[u8]) -> Option<JpegLayout> {
    let mut adobe = false;
    let mut frame: Option<(JpegLayout, Vec<(u8, u8)>)> = None;
    for (marker, payload, _) in segments(bytes) {
        match marker {
            0xEE if payload.starts_with(b"Adobe") => adobe = true,
            // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC) which share the range.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) && frame.is_none() => {
                let [_, h0, h1, w0, w1, components, ref specs @ ..] = *payload else {
                    return None;
                };
                // Each component: identifier, sampling factors (h << 4 | v), quantisation table.
                let factors: Vec<(u8, u8)> = specs
                    .chunks_exact(3)
                    .take(usize::from(components))
                    .map(|spec| (spec[1] >> 4, spec[1] & 0x0F))
                    .collect();
                let (width, height) = (
                    u32::from(u16::from_be_bytes([w0, w1])),
                    u32::from(u16::from_be_bytes([h0, h1])),
                );
                let progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                let layout = JpegLayout {
                    width,
                    height,
                    components,
                    adobe,
                    progressive,
                    buffered: true,
                    coefficient_bytes: coefficient_bytes(width, height, &factors),
                };
                frame = Some((layout, factors));
            }
            0xDA => {
                let (mut layout, factors) = frame?;
                let in_scan = payload.first().copied().unwrap_or(0);
                layout.adobe = adobe;
                layout.buffered = layout.progressive
                    || usize::from(in_scan) < factors.len()
                    || factors.len() < usize::from(layout.components);
                return Some(layout);
            }
            _ => {}
        }
    }
    frame.map(|(mut layout, _)| {
        layout.adobe = adobe;
        layout
    })
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
                buffered: true,
                coefficient_bytes: 4 * 75 * 38 * 128,
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
                buffered: true,
                coefficient_bytes: 75 * 38 * 128,
            })
        );
    }

    /// A scan header naming the first `components` components.
    fn scan(components: u8) -> Vec<u8> {
        let length = 6 + 2 * u16::from(components);
        let mut out = vec![0xFF, 0xDA];
        out.extend_from_slice(&length.to_be_bytes());
        out.push(components);
        for id in 1..=components {
            out.extend_from_slice(&[id, 0]);
        }
        out.extend_from_slice(&[0, 63, 0]);
        out
    }

    #[test]
    fn only_a_sequential_image_whose_first_scan_holds_every_component_is_decoded_unbuffered() {
        let one_scan = [header(3, false), scan(3)].concat();
        assert!(!jpeg_layout(&one_scan).unwrap().buffered);
        let scan_per_component = [header(3, false), scan(1)].concat();
        assert!(jpeg_layout(&scan_per_component).unwrap().buffered);
        let mut progressive = [header(3, false), scan(3)].concat();
        progressive[3] = 0xC2;
        let layout = jpeg_layout(&progressive).unwrap();
        assert!(layout.progressive && layout.buffered);
    }

    #[test]
    fn coefficients_are_counted_per_component_in_whole_mcus() {
        // 4:2:0, 4032x3024: MCUs of 16x16, 252x189 of them; luma 4 blocks each, chroma 1.
        let factors = [(2, 2), (1, 1), (1, 1)];
        assert_eq!(coefficient_bytes(4032, 3024, &factors), 252 * 189 * 6 * 128);
        // Edges that do not fill an MCU are padded: 17x17 is 2x2 MCUs.
        assert_eq!(coefficient_bytes(17, 17, &factors), 2 * 2 * 6 * 128);
        assert_eq!(coefficient_bytes(8, 8, &[(1, 1)]), 128);
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
