//! A walk over a PNG's chunks before any decoder sees it: the size and sample layout from IHDR,
//! and the metadata chunks (ICC profile, compressed and plain text, EXIF) measured, the
//! compressed ones inflated with a bounded output, so a tiny file whose profile inflates to
//! hundreds of megabytes is refused for the cost of its limit.

use crate::PipelineError;
use std::io::Read;

/// What a PNG's header says about its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PngHeader {
    pub width: u32,
    pub height: u32,
    /// Bytes per pixel once decoded (palettes expand to RGBA, 16-bit samples stay 16-bit).
    pub bytes_per_pixel: u64,
}

fn corrupt(what: &str) -> PipelineError {
    PipelineError::Corrupt(format!("PNG: {what}"))
}

/// Reads IHDR and measures the metadata chunks against `max_ancillary` bytes in all.
pub(crate) fn scan(bytes: &[u8], max_ancillary: u64) -> Result<PngHeader, PipelineError> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(corrupt("no signature"));
    }
    let mut at = 8;
    let mut header = None;
    let mut ancillary: u64 = 0;
    while at + 12 <= bytes.len() {
        let length = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let length = usize::try_from(length).map_err(|_| corrupt("chunk length"))?;
        let kind = &bytes[at + 4..at + 8];
        let data = bytes
            .get(at + 8..at + 8 + length)
            .ok_or_else(|| corrupt("truncated chunk"))?;
        match kind {
            b"IHDR" => header = Some(ihdr(data)?),
            b"iCCP" | b"zTXt" => {
                // keyword, NUL, compression method, compressed data
                let start = data
                    .iter()
                    .position(|b| *b == 0)
                    .map_or(data.len(), |n| n + 2);
                let left = max_ancillary.saturating_sub(ancillary);
                ancillary += inflated_len(data.get(start..).unwrap_or(&[]), left)?;
            }
            b"iTXt" => {
                // keyword, NUL, compressed flag, method, language, NUL, keyword, NUL, text
                let keyword_end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                let compressed = data.get(keyword_end + 1) == Some(&1);
                let rest = data.get(keyword_end + 3..).unwrap_or(&[]);
                let text = rest.splitn(3, |b| *b == 0).nth(2).unwrap_or(&[]);
                let left = max_ancillary.saturating_sub(ancillary);
                ancillary += if compressed {
                    inflated_len(text, left)?
                } else {
                    text.len() as u64
                };
            }
            b"tEXt" | b"eXIf" => ancillary += length as u64,
            b"IEND" => break,
            _ => {}
        }
        if ancillary > max_ancillary {
            return Err(PipelineError::TooComplex {
                what: "PNG metadata",
            });
        }
        at += 12 + length;
    }
    header.ok_or_else(|| corrupt("no IHDR"))
}

fn ihdr(data: &[u8]) -> Result<PngHeader, PipelineError> {
    let [w0, w1, w2, w3, h0, h1, h2, h3, depth, colour, ..] = *data else {
        return Err(corrupt("short IHDR"));
    };
    let channels: u64 = match colour {
        0 => 1,
        2 => 3,
        3 => 4,
        4 => 2,
        6 => 4,
        _ => return Err(corrupt("colour type")),
    };
    let sample = if depth == 16 { 2 } else { 1 };
    Ok(PngHeader {
        width: u32::from_be_bytes([w0, w1, w2, w3]),
        height: u32::from_be_bytes([h0, h1, h2, h3]),
        bytes_per_pixel: channels * sample,
    })
}

/// How long `compressed` inflates to, reading at most `cap + 1` bytes of output.
fn inflated_len(compressed: &[u8], cap: u64) -> Result<u64, PipelineError> {
    let inflated = std::io::copy(
        &mut flate2::read::ZlibDecoder::new(compressed).take(cap.saturating_add(1)),
        &mut std::io::sink(),
    )
    .map_err(|_| corrupt("metadata does not inflate"))?;
    if inflated > cap {
        return Err(PipelineError::TooComplex {
            what: "PNG metadata",
        });
    }
    Ok(inflated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_gives_the_decoded_bytes_per_pixel() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&7071u32.to_be_bytes());
        png.extend_from_slice(&7071u32.to_be_bytes());
        png.extend_from_slice(&[16, 6, 0, 0, 0, 0, 0, 0, 0]);
        let header = scan(&png, 1024).unwrap();
        assert_eq!((header.width, header.height), (7071, 7071));
        assert_eq!(header.bytes_per_pixel, 8, "16-bit RGBA");
    }

    #[test]
    fn a_truncated_chunk_or_a_missing_header_is_corrupt() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&100u32.to_be_bytes());
        png.extend_from_slice(b"IHDR\0\0");
        png.extend_from_slice(&[0; 8]);
        assert!(matches!(scan(&png, 1024), Err(PipelineError::Corrupt(_))));
        assert!(matches!(
            scan(b"not a png", 1024),
            Err(PipelineError::Corrupt(_))
        ));
    }
}
