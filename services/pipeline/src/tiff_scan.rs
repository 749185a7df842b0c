//! TIFF structure read by hand before any decoder sees the file (TIFF 6.0, and BigTIFF): every
//! directory in the chain (at most the page limit, no directory twice), every value and every
//! strip or tile inside the file, the pixel and decoded-byte limits per page and for the whole
//! file. What a page needs to be embedded in a PDF as it is (its pieces, compression, fax options,
//! JPEG tables, resolution) is kept.

use crate::{Limits, PipelineError};
use std::collections::HashSet;
use std::ops::Range;

/// Entries of one directory; real files have about twenty.
const MAX_ENTRIES: u64 = 1000;

/// Values of one entry that are read (strip offsets and counts of a tall page).
const MAX_VALUES: u64 = 1 << 20;

/// How a page's pixels are cut into the pieces that are coded one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pieces {
    /// Strips of `rows` rows across the whole width (the last one shorter).
    Strips { rows: u32 },
    /// Tiles of `width` x `height` pixels, row after row of tiles (edge tiles padded).
    Tiles { width: u32, height: u32 },
}

/// One page (directory) of a TIFF.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    /// Position of the directory in the file's chain (what a decoder seeks to).
    pub ifd: usize,
    pub width: u32,
    pub height: u32,
    /// Bits of each sample (all samples alike).
    pub bits: u16,
    pub samples: u16,
    pub photometric: u16,
    pub compression: u16,
    /// 1: samples of a pixel together; 2: one plane per sample.
    pub planar: u16,
    /// 2: bits of each byte stored least significant first.
    pub fill_order: u16,
    /// Group 3 options (bit 0: 2-D coding, bit 1: uncompressed mode, bit 2: fill bits).
    pub t4_options: u32,
    /// TIFF orientation, as EXIF's (1 to 8).
    pub orientation: u16,
    pub pieces: Pieces,
    /// Each piece's bytes in the file, in order.
    pub chunks: Vec<Range<usize>>,
    /// Horizontal and vertical resolution in pixels per inch, if the file gives them in inches
    /// or centimetres.
    pub dpi: Option<(f64, f64)>,
    /// Vertical over horizontal resolution, if only their ratio is known (resolution unit 1).
    pub aspect: Option<f64>,
    /// Shared JPEG tables (compression 7).
    pub jpeg_tables: Option<Range<usize>>,
    /// 1: unsigned integers (the only sample format converted).
    pub sample_format: u16,
}

impl Page {
    /// Bytes of the page decoded, at its own bit depth.
    pub(crate) fn decoded_bytes(&self) -> u64 {
        let row_bits = u64::from(self.width) * u64::from(self.bits) * u64::from(self.samples);
        row_bits.div_ceil(8) * u64::from(self.height)
    }

    /// The pixel rectangle `(x, y, width, height)` of piece `index` (of the first plane), as
    /// coded: a tile's full size even where it passes the page's edge, a strip's real rows.
    pub(crate) fn piece_rect(&self, index: usize) -> (u32, u32, u32, u32) {
        match self.pieces {
            Pieces::Strips { rows } => {
                let y = (index as u64 * u64::from(rows)).min(u64::from(self.height)) as u32;
                (0, y, self.width, rows.min(self.height - y))
            }
            Pieces::Tiles { width, height } => {
                let across = self.width.div_ceil(width) as usize;
                let (column, row) = (index % across, index / across);
                (column as u32 * width, row as u32 * height, width, height)
            }
        }
    }
}

/// A parsed TIFF: its pages in order (reduced-resolution copies left out).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tiff {
    pub pages: Vec<Page>,
}

/// Reads the directory chain of `bytes` under `limits`.
pub(crate) fn scan(bytes: &[u8], limits: &Limits) -> Result<Tiff, PipelineError> {
    let reader = Reader::new(bytes)?;
    let mut next = reader.first_ifd()?;
    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    let mut reduced = Vec::new();
    let mut total = 0u64;
    let mut index = 0usize;
    while next != 0 {
        if !seen.insert(next) {
            return Err(corrupt("TIFF directories form a loop"));
        }
        if seen.len() > limits.pdf.max_pages as usize {
            return Err(PipelineError::TooComplex {
                what: "TIFF directories",
            });
        }
        let (entries, following) = reader.directory(next)?;
        let page = reader.page(index, &entries, limits)?;
        total = total.saturating_add(page.decoded_bytes());
        if total > limits.max_image_bytes.saturating_mul(2) {
            return Err(PipelineError::TooComplex {
                what: "TIFF pages decoded",
            });
        }
        if entries.value(254).unwrap_or(0) & 1 == 1 {
            reduced.push(page);
        } else {
            pages.push(page);
        }
        next = following;
        index += 1;
        crate::meter::check()?;
    }
    if pages.is_empty() {
        // A file of reduced-resolution images only: they are its pages.
        pages = reduced;
    }
    if pages.is_empty() {
        return Err(corrupt("TIFF has no image"));
    }
    Ok(Tiff { pages })
}

fn corrupt(message: &str) -> PipelineError {
    PipelineError::Corrupt(message.to_owned())
}

/// One directory entry: its tag, type, count and where its value is.
#[derive(Debug, Clone)]
struct Entry {
    tag: u16,
    kind: u16,
    count: u64,
    value: Range<usize>,
}

/// A directory's entries, read against the file.
struct Entries<'a> {
    reader: &'a Reader<'a>,
    entries: Vec<Entry>,
}

impl Entries<'_> {
    fn get(&self, tag: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// The values of an unsigned integer entry (BYTE, SHORT, LONG, LONG8, IFD, IFD8).
    fn values(&self, tag: u16) -> Result<Option<Vec<u64>>, PipelineError> {
        let Some(entry) = self.get(tag) else {
            return Ok(None);
        };
        let size = match entry.kind {
            1 | 7 => 1,
            3 => 2,
            4 | 13 => 4,
            16 | 18 => 8,
            _ => return Err(corrupt("TIFF tag of the wrong type")),
        };
        if entry.count > MAX_VALUES {
            return Err(PipelineError::TooComplex {
                what: "TIFF tag values",
            });
        }
        let data = &self.reader.bytes[entry.value.clone()];
        let values = data
            .chunks_exact(size)
            .take(entry.count as usize)
            .map(|b| self.reader.uint(b))
            .collect();
        Ok(Some(values))
    }

    /// The first value of an unsigned integer entry.
    fn value(&self, tag: u16) -> Option<u64> {
        self.values(tag).ok().flatten()?.first().copied()
    }

    /// The first value of a RATIONAL entry.
    fn rational(&self, tag: u16) -> Option<f64> {
        let entry = self.get(tag)?;
        if entry.kind != 5 || entry.count == 0 {
            return None;
        }
        let data = self
            .reader
            .bytes
            .get(entry.value.start..entry.value.start + 8)?;
        let (n, d) = (self.reader.uint(&data[..4]), self.reader.uint(&data[4..]));
        (d != 0).then(|| n as f64 / d as f64)
    }
}

/// Byte order and offset size of the file.
struct Reader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
    big_tiff: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, PipelineError> {
        let big_endian = match bytes.get(..2) {
            Some(b"II") => false,
            Some(b"MM") => true,
            _ => return Err(corrupt("not a TIFF")),
        };
        let mut reader = Reader {
            bytes,
            big_endian,
            big_tiff: false,
        };
        match reader.at(2, 2)? {
            42 => {}
            43 => {
                // BigTIFF: offsets are 8 bytes (and the header says so).
                if reader.at(4, 2)? != 8 || reader.at(6, 2)? != 0 {
                    return Err(corrupt("BigTIFF header"));
                }
                reader.big_tiff = true;
            }
            _ => return Err(corrupt("not a TIFF")),
        }
        Ok(reader)
    }

    fn uint(&self, b: &[u8]) -> u64 {
        let mut value = 0u64;
        if self.big_endian {
            for &byte in b {
                value = value << 8 | u64::from(byte);
            }
        } else {
            for &byte in b.iter().rev() {
                value = value << 8 | u64::from(byte);
            }
        }
        value
    }

    /// The unsigned integer of `size` bytes at `offset`.
    fn at(&self, offset: u64, size: usize) -> Result<u64, PipelineError> {
        let start = usize::try_from(offset).map_err(|_| corrupt("TIFF offset"))?;
        let b = self
            .bytes
            .get(start..start.saturating_add(size))
            .ok_or_else(|| corrupt("TIFF offset past the end of the file"))?;
        Ok(self.uint(b))
    }

    fn offset_size(&self) -> usize {
        if self.big_tiff { 8 } else { 4 }
    }

    fn first_ifd(&self) -> Result<u64, PipelineError> {
        let first = if self.big_tiff {
            self.at(8, 8)?
        } else {
            self.at(4, 4)?
        };
        if first == 0 {
            return Err(corrupt("TIFF has no directory"));
        }
        Ok(first)
    }

    /// The entries of the directory at `offset`, and the offset of the next one (0 if none).
    fn directory(&'a self, offset: u64) -> Result<(Entries<'a>, u64), PipelineError> {
        let (count_size, entry_size) = if self.big_tiff { (8, 20) } else { (2, 12) };
        let count = self.at(offset, count_size)?;
        if count > MAX_ENTRIES {
            return Err(PipelineError::TooComplex {
                what: "TIFF directory entries",
            });
        }
        let first = offset + count_size as u64;
        let mut entries = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = first + i * entry_size;
            let tag = self.at(at, 2)? as u16;
            let kind = self.at(at + 2, 2)? as u16;
            let (count, value_at) = if self.big_tiff {
                (self.at(at + 4, 8)?, at + 12)
            } else {
                (self.at(at + 4, 4)?, at + 8)
            };
            let size: u64 = match kind {
                1 | 2 | 6 | 7 => 1,
                3 | 8 => 2,
                4 | 9 | 11 | 13 => 4,
                5 | 10 | 12 | 16 | 17 | 18 => 8,
                // Unknown types are skipped, as the specification asks.
                _ => continue,
            };
            let length = count
                .checked_mul(size)
                .ok_or_else(|| corrupt("TIFF tag too long"))?;
            let start = if length <= self.offset_size() as u64 {
                value_at
            } else {
                self.at(value_at, self.offset_size())?
            };
            let end = start
                .checked_add(length)
                .filter(|&end| end <= self.bytes.len() as u64)
                .ok_or_else(|| corrupt("TIFF tag value past the end of the file"))?;
            entries.push(Entry {
                tag,
                kind,
                count,
                value: start as usize..end as usize,
            });
        }
        let next = self.at(first + count * entry_size, self.offset_size())?;
        Ok((
            Entries {
                reader: self,
                entries,
            },
            next,
        ))
    }

    /// The page a directory describes, checked against the file and the limits.
    fn page(
        &self,
        ifd: usize,
        entries: &Entries<'_>,
        limits: &Limits,
    ) -> Result<Page, PipelineError> {
        let small = |v: u64| u32::try_from(v).map_err(|_| corrupt("TIFF value out of range"));
        let width = small(
            entries
                .value(256)
                .ok_or_else(|| corrupt("TIFF without width"))?,
        )?;
        let height = small(
            entries
                .value(257)
                .ok_or_else(|| corrupt("TIFF without height"))?,
        )?;
        if width == 0 || height == 0 {
            return Err(corrupt("empty image"));
        }
        if u64::from(width) * u64::from(height) > limits.max_pixels {
            return Err(PipelineError::TooManyPixels { width, height });
        }
        let samples = entries.value(277).unwrap_or(1);
        let bits = entries.values(258)?.unwrap_or_else(|| vec![1]);
        let first_bits = bits.first().copied().unwrap_or(1);
        if samples == 0 || samples > 8 || bits.iter().any(|&b| b != first_bits) {
            return Err(PipelineError::Unsupported("this TIFF sample layout"));
        }
        if !matches!(first_bits, 1 | 2 | 4 | 8 | 16) {
            return Err(PipelineError::Unsupported("this TIFF bit depth"));
        }
        let planar = entries.value(284).unwrap_or(1) as u16;
        let pieces = match (entries.value(322), entries.value(323)) {
            (Some(w), Some(h)) => {
                let (w, h) = (small(w)?, small(h)?);
                if w == 0 || h == 0 || u64::from(w) * u64::from(h) > limits.max_pixels {
                    return Err(corrupt("TIFF tile size"));
                }
                Pieces::Tiles {
                    width: w,
                    height: h,
                }
            }
            _ => Pieces::Strips {
                rows: entries
                    .value(278)
                    .map_or(height, |rows| rows.min(u64::from(height)) as u32)
                    .max(1),
            },
        };
        let planes = if planar == 2 { samples } else { 1 };
        let per_plane = match pieces {
            Pieces::Strips { rows } => u64::from(height.div_ceil(rows)),
            Pieces::Tiles {
                width: w,
                height: h,
            } => u64::from(width.div_ceil(w)) * u64::from(height.div_ceil(h)),
        };
        let expected = per_plane * planes;
        let (offsets_tag, counts_tag) = match pieces {
            Pieces::Strips { .. } => (273, 279),
            Pieces::Tiles { .. } => (324, 325),
        };
        let offsets = entries
            .values(offsets_tag)?
            .ok_or_else(|| corrupt("TIFF without strip or tile offsets"))?;
        let counts = entries
            .values(counts_tag)?
            .ok_or_else(|| corrupt("TIFF without strip or tile byte counts"))?;
        if (offsets.len() as u64) < expected || (counts.len() as u64) < expected {
            return Err(corrupt(
                "TIFF has fewer strips or tiles than its size needs",
            ));
        }
        let mut chunks = Vec::with_capacity(expected as usize);
        for (&offset, &count) in offsets.iter().zip(&counts).take(expected as usize) {
            let end = offset
                .checked_add(count)
                .filter(|&end| end <= self.bytes.len() as u64)
                .ok_or_else(|| corrupt("TIFF strip or tile past the end of the file"))?;
            chunks.push(offset as usize..end as usize);
        }
        let unit = entries.value(296).unwrap_or(2);
        let resolution = entries.rational(282).zip(entries.rational(283));
        let sane = |v: f64| v.is_finite() && (1.0..=100_000.0).contains(&v);
        let (dpi, aspect) = match resolution {
            Some((x, y)) if sane(x) && sane(y) => match unit {
                2 => (Some((x, y)), None),
                3 => (Some((x * 2.54, y * 2.54)), None),
                _ => (None, Some(y / x)),
            },
            _ => (None, None),
        };
        let jpeg_tables = entries.get(347).map(|e| e.value.clone());
        let page = Page {
            ifd,
            width,
            height,
            bits: first_bits as u16,
            samples: samples as u16,
            photometric: entries
                .value(262)
                .unwrap_or(if first_bits == 1 { 0 } else { 1 }) as u16,
            compression: entries.value(259).unwrap_or(1) as u16,
            planar,
            fill_order: entries.value(266).unwrap_or(1) as u16,
            t4_options: entries.value(292).unwrap_or(0) as u32,
            orientation: entries.value(274).unwrap_or(1).clamp(1, 8) as u16,
            pieces,
            chunks,
            dpi,
            aspect,
            jpeg_tables,
            sample_format: entries.value(339).unwrap_or(1) as u16,
        };
        if page.decoded_bytes() > limits.max_image_bytes {
            return Err(PipelineError::TooComplex {
                what: "decoded image",
            });
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian TIFF of `pages` one-strip, 8-bit grey, uncompressed pages of `w` x `h`,
    /// the last directory pointing to `last_next`.
    fn grey(w: u32, h: u32, pages: usize, last_next: u32) -> Vec<u8> {
        let mut out = b"II*\0".to_vec();
        out.extend_from_slice(&8u32.to_le_bytes());
        let entries: u16 = 8;
        let ifd_len = 2 + 12 * u32::from(entries) + 4;
        let data_len = w * h;
        for page in 0..pages {
            let at = out.len() as u32;
            let data_at = at + ifd_len;
            let next = if page + 1 == pages {
                last_next
            } else {
                data_at + data_len
            };
            out.extend_from_slice(&entries.to_le_bytes());
            let mut entry = |tag: u16, kind: u16, value: u32| {
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(&kind.to_le_bytes());
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            };
            entry(256, 4, w);
            entry(257, 4, h);
            entry(258, 3, 8);
            entry(259, 3, 1);
            entry(262, 3, 1);
            entry(273, 4, data_at);
            entry(278, 4, h);
            entry(279, 4, data_len);
            out.extend_from_slice(&next.to_le_bytes());
            out.extend(std::iter::repeat_n(0x80, data_len as usize));
        }
        out
    }

    #[test]
    fn every_directory_is_a_page() {
        let tiff = scan(&grey(4, 3, 3, 0), &Limits::default()).unwrap();
        assert_eq!(tiff.pages.len(), 3);
        assert_eq!((tiff.pages[2].width, tiff.pages[2].height), (4, 3));
        assert_eq!(tiff.pages[1].chunks[0].len(), 12);
    }

    #[test]
    fn a_directory_chain_that_loops_is_refused() {
        let bytes = grey(4, 3, 2, 8);
        assert!(matches!(
            scan(&bytes, &Limits::default()),
            Err(PipelineError::Corrupt(_))
        ));
    }

    #[test]
    fn more_directories_than_the_page_limit_are_refused() {
        let mut limits = Limits::default();
        limits.pdf.max_pages = 2;
        assert!(matches!(
            scan(&grey(2, 2, 3, 0), &limits),
            Err(PipelineError::TooComplex {
                what: "TIFF directories"
            })
        ));
        assert!(scan(&grey(2, 2, 2, 0), &limits).is_ok());
    }

    #[test]
    fn a_strip_past_the_end_of_the_file_is_refused() {
        let bytes = grey(4, 3, 1, 0);
        assert!(matches!(
            scan(&bytes[..bytes.len() - 1], &Limits::default()),
            Err(PipelineError::Corrupt(_))
        ));
    }

    #[test]
    fn the_pixel_limit_is_checked_from_the_directory() {
        let limits = Limits {
            max_pixels: 11,
            ..Limits::default()
        };
        assert!(matches!(
            scan(&grey(4, 3, 1, 0), &limits),
            Err(PipelineError::TooManyPixels {
                width: 4,
                height: 3
            })
        ));
    }
}
