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
    let mut header = None;
    let mut ancillary: u64 = 0;
    for chunk in chunks(bytes)? {
        let Chunk { kind, data, .. } = chunk?;
        match kind {
            // A decoder reads the first IHDR; a second one is a file built to show the header
            // check another image than the decoder decodes.
            b"IHDR" if header.is_some() => return Err(corrupt("a second IHDR")),
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
            b"tEXt" | b"eXIf" => ancillary += data.len() as u64,
            b"IEND" => break,
            _ => {}
        }
        if ancillary > max_ancillary {
            return Err(PipelineError::TooComplex {
                what: "PNG metadata",
            });
        }
    }
    header.ok_or_else(|| corrupt("no IHDR"))
}

/// One chunk of a PNG.
struct Chunk<'a> {
    /// Offset of its length field.
    at: usize,
    kind: &'a [u8],
    data: &'a [u8],
    /// The CRC stored after the data.
    crc: &'a [u8],
}

/// The chunks after the signature, in order, until fewer than 12 bytes (an empty chunk) are
/// left; a chunk whose data or CRC runs past the end of the file is an error.
fn chunks(
    bytes: &[u8],
) -> Result<impl Iterator<Item = Result<Chunk<'_>, PipelineError>>, PipelineError> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err(corrupt("no signature"));
    }
    let mut at = 8;
    Ok(std::iter::from_fn(move || {
        if at + 12 > bytes.len() {
            return None;
        }
        let length = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let chunk = usize::try_from(length)
            .ok()
            .and_then(|length| {
                Some(Chunk {
                    at,
                    kind: &bytes[at + 4..at + 8],
                    data: bytes.get(at + 8..at + 8 + length)?,
                    crc: bytes.get(at + 8 + length..at + 12 + length)?,
                })
            })
            .ok_or_else(|| corrupt("truncated chunk"));
        at = match &chunk {
            Ok(chunk) => chunk.at + 12 + chunk.data.len(),
            Err(_) => bytes.len(),
        };
        Some(chunk)
    }))
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

/// Proves a PNG complete and its image data intact without building the image: every chunk's
/// CRC matches, IHDR is valid, a palette image has PLTE, the IDAT chunks are consecutive and
/// their zlib stream (Adler-32 included) inflates to exactly the filtered rows the header
/// announces (Adam7 passes counted), each row starting with a known filter type, and IEND
/// closes the file. Inflating is the bulk of decoding a PNG; what is skipped is undoing the
/// filters, expanding samples and the image buffer itself.
pub(crate) fn verify(bytes: &[u8]) -> Result<(), PipelineError> {
    let mut layout: Option<RowLayout> = None;
    let mut palette = false;
    let mut image_data: Option<ImageData> = None;
    let mut idat_done = false;
    let mut ended = false;
    for chunk in chunks(bytes)? {
        let Chunk {
            at,
            kind,
            data,
            crc: stored,
        } = chunk?;
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        if crc.sum().to_be_bytes() != stored {
            return Err(corrupt("chunk CRC mismatch"));
        }
        match kind {
            b"IHDR" if at == 8 => layout = Some(RowLayout::from_ihdr(data)?),
            b"IHDR" => return Err(corrupt("IHDR not first")),
            b"PLTE" => palette = true,
            b"IDAT" => {
                let layout = layout.ok_or_else(|| corrupt("IDAT before IHDR"))?;
                if idat_done {
                    return Err(corrupt("IDAT chunks not consecutive"));
                }
                if layout.palette && !palette {
                    return Err(corrupt("palette image without PLTE"));
                }
                image_data
                    .get_or_insert_with(|| ImageData::new(layout))
                    .feed(data)?;
            }
            b"IEND" => {
                ended = true;
                break;
            }
            _ => {}
        }
        if kind != b"IDAT" && image_data.is_some() {
            idat_done = true;
        }
    }
    if !ended {
        return Err(corrupt("truncated before IEND"));
    }
    image_data.ok_or_else(|| corrupt("no image data"))?.finish()
}

/// How the filtered rows of a PNG are laid out, from IHDR.
#[derive(Debug, Clone, Copy)]
struct RowLayout {
    width: u64,
    height: u64,
    bits_per_pixel: u64,
    interlaced: bool,
    palette: bool,
}

impl RowLayout {
    fn from_ihdr(data: &[u8]) -> Result<Self, PipelineError> {
        let [
            w0,
            w1,
            w2,
            w3,
            h0,
            h1,
            h2,
            h3,
            depth,
            colour,
            compression,
            filter,
            interlace,
        ] = *data
        else {
            return Err(corrupt("IHDR length"));
        };
        let channels: u64 = match (colour, depth) {
            (0, 1 | 2 | 4 | 8 | 16) => 1,
            (2, 8 | 16) => 3,
            (3, 1 | 2 | 4 | 8) => 1,
            (4, 8 | 16) => 2,
            (6, 8 | 16) => 4,
            _ => return Err(corrupt("colour type and bit depth")),
        };
        if compression != 0 || filter != 0 || interlace > 1 {
            return Err(corrupt("IHDR method"));
        }
        let (width, height) = (
            u64::from(u32::from_be_bytes([w0, w1, w2, w3])),
            u64::from(u32::from_be_bytes([h0, h1, h2, h3])),
        );
        if width == 0 || height == 0 {
            return Err(corrupt("empty image"));
        }
        Ok(RowLayout {
            width,
            height,
            bits_per_pixel: channels * u64::from(depth),
            interlaced: interlace == 1,
            palette: colour == 3,
        })
    }

    /// Each pass's (rows, bytes per row including the filter byte): one pass, or Adam7's seven.
    fn passes(&self) -> Vec<(u64, u64)> {
        let row = |width: u64| 1 + (width * self.bits_per_pixel).div_ceil(8);
        if !self.interlaced {
            return vec![(self.height, row(self.width))];
        }
        // (x start, y start, x step, y step) of the seven Adam7 passes.
        const ADAM7: [(u64, u64, u64, u64); 7] = [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ];
        ADAM7
            .iter()
            .map(|&(x0, y0, dx, dy)| {
                let columns = self.width.saturating_sub(x0).div_ceil(dx);
                let rows = self.height.saturating_sub(y0).div_ceil(dy);
                if columns == 0 {
                    (0, 0)
                } else {
                    (rows, row(columns))
                }
            })
            .filter(|&(rows, _)| rows > 0)
            .collect()
    }
}

/// The IDAT stream inflated into a small buffer and checked row by row.
struct ImageData {
    inflater: flate2::Decompress,
    passes: Vec<(u64, u64)>,
    /// Pass being read, rows left in it, bytes left in the current row.
    pass: usize,
    rows_left: u64,
    row_left: u64,
    done: bool,
}

impl ImageData {
    fn new(layout: RowLayout) -> Self {
        let passes = layout.passes();
        let (rows_left, row_left) = passes.first().map_or((0, 0), |&(rows, row)| (rows, row));
        ImageData {
            inflater: flate2::Decompress::new(true),
            passes,
            pass: 0,
            rows_left,
            row_left,
            done: false,
        }
    }

    fn feed(&mut self, mut input: &[u8]) -> Result<(), PipelineError> {
        let mut buffer = [0u8; 32 * 1024];
        while !input.is_empty() || !self.done {
            if self.done {
                return Err(corrupt("data after the end of the image stream"));
            }
            let (before_in, before_out) = (self.inflater.total_in(), self.inflater.total_out());
            let status = self
                .inflater
                .decompress(input, &mut buffer, flate2::FlushDecompress::None)
                .map_err(|_| corrupt("image data does not inflate"))?;
            let read = usize::try_from(self.inflater.total_in() - before_in).unwrap_or(0);
            let written = usize::try_from(self.inflater.total_out() - before_out).unwrap_or(0);
            input = &input[read..];
            self.rows(&buffer[..written])?;
            if status == flate2::Status::StreamEnd {
                self.done = true;
            } else if read == 0 && written == 0 {
                // Needs more input (the next IDAT chunk).
                return Ok(());
            }
        }
        Ok(())
    }

    /// Walks inflated bytes along the rows: a filter type at each row start, no byte too many.
    fn rows(&mut self, mut data: &[u8]) -> Result<(), PipelineError> {
        while !data.is_empty() {
            if self.pass >= self.passes.len() {
                return Err(corrupt("more image data than the header announces"));
            }
            if self.row_left == self.passes[self.pass].1 && data[0] > 4 {
                return Err(corrupt("unknown row filter"));
            }
            let take = usize::try_from(self.row_left)
                .unwrap_or(usize::MAX)
                .min(data.len());
            data = &data[take..];
            self.row_left -= take as u64;
            if self.row_left == 0 {
                self.rows_left -= 1;
                if self.rows_left == 0 {
                    self.pass += 1;
                    if let Some(&(rows, _)) = self.passes.get(self.pass) {
                        self.rows_left = rows;
                    }
                }
                if let Some(&(_, row)) = self.passes.get(self.pass) {
                    self.row_left = row;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(), PipelineError> {
        if !self.done || self.pass < self.passes.len() {
            return Err(corrupt("image data ends early"));
        }
        Ok(())
    }
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
