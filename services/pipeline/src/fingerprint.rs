//! Fingerprints of an image for finding duplicates: a 64-bit perceptual hash (to find
//! candidates in an index) and a block signature (to confirm them).
//!
//! Both come from the same normalised picture: grey, upright (EXIF orientation applied), and
//! brought to between 256 and 511 pixels wide by halving: a JPEG is decoded at 1/1, 1/2, 1/4 or
//! 1/8 scale by libjpeg, a PNG is read row by row and binned 2x2 the same number of times (never
//! held whole). Halving the same way whatever the source size keeps a photo and its copy at half
//! size, or re-encoded, alike to a few grey levels.
//!
//! - The hash is the classic DCT hash: the picture area-resampled to 32x32, its 2-D DCT, and one
//!   bit per coefficient of the 8x8 lowest frequencies (the DC term replaced by the (8, 0) one)
//!   above their median. It survives re-encoding, halving and rotation (0 to 2 bits), but it
//!   describes the layout: receipts of one shop that differ only in their amounts hash alike.
//! - The signature is the picture area-resampled to 32x64 grey levels. Two pictures are the same
//!   if no cell differs by more than a few levels ([`signature_distance`]): a re-encoded or
//!   halved copy stays within about 4, while a changed amount moves the cells of its digits by
//!   10 or more.

use crate::jpeg;
use crate::{Limits, MediaType, PipelineError};
use image::metadata::Orientation;

/// Width of the signature, in cells.
pub const SIGNATURE_WIDTH: usize = 32;
/// Height of the signature, in cells.
pub const SIGNATURE_HEIGHT: usize = 64;
/// The narrowest the normalised picture is (unless the image itself is narrower).
const WORK_WIDTH: u32 = 256;

/// A picture's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The 64-bit perceptual hash.
    pub hash: u64,
    /// [`SIGNATURE_WIDTH`] x [`SIGNATURE_HEIGHT`] grey levels, row after row.
    pub signature: Vec<u8>,
}

/// The largest difference between two signatures' cells (255 if they are not both signatures).
pub fn signature_distance(a: &[u8], b: &[u8]) -> u32 {
    if a.len() != SIGNATURE_WIDTH * SIGNATURE_HEIGHT || a.len() != b.len() {
        return 255;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| u32::from(x.abs_diff(*y)))
        .max()
        .unwrap_or(0)
}

/// The fingerprint of a JPEG or PNG (checked already), or of the JPEG that makes up the first
/// page of a PDF (see [`crate::pdf`]); `None` for other types and for images it cannot read
/// cheaply (CMYK JPEGs, interlaced PNGs).
pub fn fingerprint(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<Option<Fingerprint>, PipelineError> {
    let grey = match media {
        MediaType::Jpeg => jpeg_grey(bytes, limits)?,
        MediaType::Png => png_grey(bytes)?,
        _ => None,
    };
    Ok(grey.map(|grey| grey.fingerprint()))
}

/// A grey picture, upright.
struct Grey {
    pixels: Vec<u8>,
    width: usize,
    height: usize,
}

/// How many times to halve `width` (at most 3) to stay at least [`WORK_WIDTH`].
fn halvings(width: u32) -> u32 {
    (0..3)
        .take_while(|k| width >> (k + 1) >= WORK_WIDTH)
        .count() as u32
}

fn rotates(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

fn jpeg_grey(bytes: &[u8], limits: &Limits) -> Result<Option<Grey>, PipelineError> {
    let (cost, orientation) = crate::inspect::read_header(bytes, MediaType::Jpeg, limits)?;
    jpeg_grey_at(bytes, &cost, orientation)
}

/// The JPEG of header `cost` and `orientation` decoded grey at the scale of [`halvings`].
fn jpeg_grey_at(
    bytes: &[u8],
    cost: &crate::DecodeCost,
    orientation: Orientation,
) -> Result<Option<Grey>, PipelineError> {
    let numerator = 8u8 >> halvings(upright_width(cost, orientation));
    let Some(scaled) =
        jpeg::decode_grey_scaled(jpeg::Input::Whole(bytes), numerator, cost.check_bytes)?
    else {
        return Ok(None);
    };
    Ok(Some(upright(
        scaled.pixels,
        scaled.width,
        scaled.height,
        orientation,
    )?))
}

fn upright_width(cost: &crate::DecodeCost, orientation: Orientation) -> u32 {
    if rotates(orientation) {
        cost.height
    } else {
        cost.width
    }
}

/// Proves a JPEG decodable (as [`crate::jpeg::verify`] does: every coefficient of every scan
/// entropy-decoded, to the end-of-image marker, every corrupt-data warning an error) and takes
/// its fingerprint in the same pass: the grey decode at the fingerprint's scale is that proof.
pub(crate) fn verify_jpeg(
    bytes: &[u8],
    check_bytes: u64,
    limits: &Limits,
) -> Result<Option<Fingerprint>, PipelineError> {
    let (cost, orientation) = crate::inspect::read_header(bytes, MediaType::Jpeg, limits)?;
    match grey_check(jpeg::Input::Whole(bytes), &cost, orientation, check_bytes)? {
        ArrivedCheck::Passed(fingerprint) => Ok(fingerprint),
        // A colour space libjpeg cannot make grey (CMYK): checked as usual, no fingerprint.
        ArrivedCheck::Unchecked => jpeg::verify(bytes, check_bytes).map(|()| None),
    }
}

/// The check of [`verify_jpeg`] reading `input`.
fn grey_check(
    input: jpeg::Input<'_>,
    cost: &crate::DecodeCost,
    orientation: Orientation,
    check_bytes: u64,
) -> Result<ArrivedCheck, PipelineError> {
    let numerator = 8u8 >> halvings(upright_width(cost, orientation));
    Ok(
        match jpeg::decode_grey_scaled(input, numerator, check_bytes)? {
            Some(scaled) => ArrivedCheck::Passed(
                upright(scaled.pixels, scaled.width, scaled.height, orientation)
                    .ok()
                    .map(|grey| grey.fingerprint()),
            ),
            None => ArrivedCheck::Unchecked,
        },
    )
}

/// What a JPEG's headers say, read from the first bytes of an upload (see [`jpeg_start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegStart {
    pub(crate) cost: crate::DecodeCost,
    pub(crate) orientation: Orientation,
}

impl JpegStart {
    /// The memory its check may take (what [`crate::estimate`] reserves to inspect it).
    pub fn check_bytes(&self) -> u64 {
        self.cost.check_bytes
    }
}

/// The headers of a JPEG from its first bytes `prefix`, once they hold all of them (up to the
/// first scan) and they pass the limits: enough to start its check before the rest arrives
/// ([`verify_jpeg_arriving`]). `None` until then, or if they do not pass (the whole file's
/// inspection then says why).
pub fn jpeg_start(prefix: &[u8], limits: &Limits) -> Option<JpegStart> {
    let (cost, orientation) = crate::inspect::read_header_prefix(prefix, limits).ok()?;
    Some(JpegStart { cost, orientation })
}

/// The outcome of checking a JPEG as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrivedCheck {
    /// Every coefficient decoded to the end-of-image marker; the picture's fingerprint.
    Passed(Option<Fingerprint>),
    /// Not checked this way (a colour space libjpeg cannot make grey): the whole file is.
    Unchecked,
}

/// Checks a JPEG as it arrives, as [`verify_jpeg`] checks a whole one, starting from the headers
/// its first bytes gave (`start`): libjpeg reads `arrival` chunk by chunk, waiting for each, on
/// the calling thread. A failed arrival ends the check with an error. The outcome stands for the
/// whole file only if its headers, read again once it is whole, are `start`'s (see
/// [`crate::inspect_arrived_jpeg`]).
pub fn verify_jpeg_arriving(
    arrival: &crate::Arrival,
    start: &JpegStart,
) -> Result<ArrivedCheck, PipelineError> {
    grey_check(
        jpeg::Input::Arriving(arrival),
        &start.cost,
        start.orientation,
        start.cost.check_bytes,
    )
}

fn upright(
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    orientation: Orientation,
) -> Result<Grey, PipelineError> {
    let mut image = image::DynamicImage::ImageLuma8(
        image::GrayImage::from_raw(width, height, pixels)
            .ok_or_else(|| PipelineError::Corrupt("grey buffer does not match its size".into()))?,
    );
    image.apply_orientation(orientation);
    let (width, height) = (image.width() as usize, image.height() as usize);
    Ok(Grey {
        pixels: image.into_luma8().into_raw(),
        width,
        height,
    })
}

/// A PNG read row by row into grey (alpha over white), binned 2x2 [`halvings`] times as it goes.
fn png_grey(bytes: &[u8]) -> Result<Option<Grey>, PipelineError> {
    let corrupt = |err: png::DecodingError| PipelineError::Corrupt(err.to_string());
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(corrupt)?;
    if reader.info().interlaced {
        return Ok(None);
    }
    let (width, height) = (reader.info().width, reader.info().height);
    let (colour, _) = reader.output_color_type();
    let channels = colour.samples();
    let bin = 1usize << halvings(width);
    let out_width = (width as usize).div_ceil(bin);
    let out_height = (height as usize).div_ceil(bin);
    let mut sums = vec![0u32; out_width];
    let mut counts = vec![0u32; out_width];
    let mut pixels = Vec::with_capacity(out_width * out_height);
    let mut y = 0usize;
    while let Some(row) = reader.next_row().map_err(corrupt)? {
        for (x, pixel) in row.data().chunks_exact(channels).enumerate() {
            let grey = match pixel {
                [l] => u32::from(*l),
                [l, a] => over_white(u32::from(*l), u32::from(*a)),
                [r, g, b] => luma(*r, *g, *b),
                [r, g, b, a] => over_white(luma(*r, *g, *b), u32::from(*a)),
                _ => 255,
            };
            sums[x / bin] += grey;
            counts[x / bin] += 1;
        }
        y += 1;
        if y.is_multiple_of(bin) || y == height as usize {
            pixels.extend(
                sums.iter()
                    .zip(&counts)
                    .map(|(sum, count)| (sum / (*count).max(1)) as u8),
            );
            sums.fill(0);
            counts.fill(0);
        }
    }
    if pixels.len() != out_width * out_height {
        return Err(PipelineError::Corrupt("PNG rows missing".into()));
    }
    Ok(Some(Grey {
        pixels,
        width: out_width,
        height: out_height,
    }))
}

/// ITU-R BT.601 luma, as libjpeg computes grey.
fn luma(r: u8, g: u8, b: u8) -> u32 {
    (19_595 * u32::from(r) + 38_470 * u32::from(g) + 7_471 * u32::from(b) + 32_768) >> 16
}

fn over_white(grey: u32, alpha: u32) -> u32 {
    (grey * alpha + 255 * (255 - alpha)) / 255
}

impl Grey {
    fn fingerprint(&self) -> Fingerprint {
        // The signature and the hash are both 32 cells wide: one horizontal pass serves both.
        let narrow = narrow(self, SIGNATURE_WIDTH);
        let signature = area(&narrow, SIGNATURE_WIDTH, self.height, SIGNATURE_HEIGHT)
            .into_iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        Fingerprint {
            hash: dct_hash(&area(&narrow, SIGNATURE_WIDTH, self.height, 32)),
            signature,
        }
    }
}

/// A cell of the horizontal pass: the pixels it covers are contiguous, and all but the two at
/// its edges are covered whole, so they share one weight and are summed as integers.
struct Span {
    /// The first pixel and its weight.
    first: (usize, f64),
    /// The pixels covered whole and their common weight.
    inner: (std::ops::Range<usize>, f64),
    /// The last pixel and its weight (0 if the cell has one pixel).
    last: (usize, f64),
}

impl Span {
    fn of(taps: &[(usize, f64)]) -> Span {
        match taps {
            [] => Span {
                first: (0, 0.0),
                inner: (0..0, 0.0),
                last: (0, 0.0),
            },
            [only] => Span {
                first: *only,
                inner: (0..0, 0.0),
                last: (only.0, 0.0),
            },
            [first, inner @ .., last] => Span {
                first: *first,
                inner: (first.0 + 1..last.0, inner.first().map_or(0.0, |&(_, w)| w)),
                last: *last,
            },
        }
    }

    fn sum(&self, line: &[u8]) -> f64 {
        let inner: u32 = line[self.inner.0.clone()]
            .iter()
            .map(|&p| u32::from(p))
            .sum();
        f64::from(line[self.first.0]) * self.first.1
            + f64::from(inner) * self.inner.1
            + f64::from(line[self.last.0]) * self.last.1
    }
}

/// The horizontal pass of [`area`]: each row area-resampled to `width` cells.
fn narrow(grey: &Grey, width: usize) -> Vec<f64> {
    let columns: Vec<Span> = weights(grey.width, width)
        .iter()
        .map(|taps| Span::of(taps))
        .collect();
    let mut narrow = vec![0f64; width * grey.height];
    for (y, out) in narrow.chunks_exact_mut(width).enumerate() {
        let line = &grey.pixels[y * grey.width..(y + 1) * grey.width];
        for (cell, span) in out.iter_mut().zip(&columns) {
            *cell = span.sum(line);
        }
    }
    narrow
}

/// The picture area-resampled to `width` x `height` (each cell the mean of the pixels it covers,
/// partly covered pixels weighted by their share), from its [`narrow`] rows (`rows` of them,
/// `width` cells each).
fn area(narrow: &[f64], width: usize, rows: usize, height: usize) -> Vec<f64> {
    let rows = weights(rows, height);
    let mut out = vec![0f64; width * height];
    for (y, taps) in rows.iter().enumerate() {
        for x in 0..width {
            out[y * width + x] = taps.iter().map(|&(i, w)| narrow[i * width + x] * w).sum();
        }
    }
    out
}

/// For each of `to` cells over `from` pixels: the pixels it covers and their weights (summing
/// to 1).
fn weights(from: usize, to: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|cell| {
            let (start, end) = (cell as f64 * scale, (cell + 1) as f64 * scale);
            let first = start.floor() as usize;
            let last = (end.ceil() as usize).min(from).max(first + 1);
            let taps: Vec<(usize, f64)> = (first..last)
                .map(|i| {
                    let overlap = (end.min(i as f64 + 1.0) - start.max(i as f64)).max(0.0);
                    (i.min(from - 1), overlap)
                })
                .filter(|&(_, w)| w > 0.0)
                .collect();
            let total: f64 = taps.iter().map(|&(_, w)| w).sum();
            taps.into_iter()
                .map(|(i, w)| (i, w / total.max(f64::MIN_POSITIVE)))
                .collect()
        })
        .collect()
}

/// The DCT hash of a 32x32 picture.
fn dct_hash(pixels: &[f64]) -> u64 {
    const N: usize = 32;
    let cos: Vec<f64> = (0..9 * N)
        .map(|i| {
            let (k, n) = (i / N, i % N);
            (std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * N) as f64).cos()
        })
        .collect();
    let coefficient = |u: usize, v: usize| -> f64 {
        let mut sum = 0.0;
        for y in 0..N {
            let row: f64 = (0..N).map(|x| pixels[y * N + x] * cos[u * N + x]).sum();
            sum += row * cos[v * N + y];
        }
        sum
    };
    let mut values: Vec<f64> = Vec::with_capacity(64);
    for v in 0..8 {
        for u in 0..8 {
            values.push(if (u, v) == (0, 0) {
                coefficient(8, 0)
            } else {
                coefficient(u, v)
            });
        }
    }
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > median)
        .fold(0u64, |hash, (i, _)| hash | (1 << i))
}

/// What taking a PDF's fingerprint may allocate besides the loaded document (the first page's
/// picture decoded grey at its fingerprint scale, and a turned copy): the PDF check's memory
/// estimate includes it, and a page picture that would need more gets no fingerprint.
pub(crate) const PDF_FINGERPRINT_BYTES: u64 = 8 << 20;

/// The fingerprint of the picture that makes up the first page of `doc` (see
/// [`first_page_jpeg`]), read in place; `None` if there is none or it would need more than
/// [`PDF_FINGERPRINT_BYTES`].
pub(crate) fn pdf_first_page(doc: &lopdf::Document, limits: &Limits) -> Option<Fingerprint> {
    let jpeg = first_page_jpeg(doc)?;
    let (cost, orientation) = crate::inspect::read_header(jpeg, MediaType::Jpeg, limits).ok()?;
    let shift = halvings(upright_width(&cost, orientation));
    let scaled = u64::from(cost.width >> shift).saturating_add(1)
        * u64::from(cost.height >> shift).saturating_add(1);
    if scaled.saturating_mul(2).saturating_add(64 << 10) > PDF_FINGERPRINT_BYTES {
        return None;
    }
    jpeg_grey_at(jpeg, &cost, orientation)
        .ok()
        .flatten()
        .map(|grey| grey.fingerprint())
}

/// The JPEG bytes of the image that makes up the first page of `doc`: its first image XObject,
/// if that is DCT-encoded and the page draws nothing else of its own.
pub(crate) fn first_page_jpeg(doc: &lopdf::Document) -> Option<&[u8]> {
    let page = *crate::inspect::pages(doc).first()?;
    let page = doc.get_dictionary(page).ok()?;
    let resources = match page.get(b"Resources").ok()? {
        lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        lopdf::Object::Dictionary(dict) => dict,
        _ => return None,
    };
    let xobjects = match resources.get(b"XObject").ok()? {
        lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        lopdf::Object::Dictionary(dict) => dict,
        _ => return None,
    };
    if xobjects.len() != 1 {
        return None;
    }
    let (_, object) = xobjects.iter().next()?;
    let stream = doc
        .get_object(object.as_reference().ok()?)
        .ok()?
        .as_stream()
        .ok()?;
    let is_image = stream
        .dict
        .get(b"Subtype")
        .and_then(lopdf::Object::as_name)
        .is_ok_and(|name| name == b"Image");
    let dct = stream
        .dict
        .get(b"Filter")
        .and_then(lopdf::Object::as_name)
        .is_ok_and(|name| name == b"DCTDecode");
    (is_image && dct).then_some(stream.content.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_sums_what_its_weighted_taps_sum() {
        for (from, to) in [
            (360, 32),
            (257, 32),
            (31, 32),
            (1, 32),
            (2048, 32),
            (100, 64),
        ] {
            let line: Vec<u8> = (0..from).map(|i| (i * 37 % 256) as u8).collect();
            for taps in weights(from, to) {
                let direct: f64 = taps.iter().map(|&(i, w)| f64::from(line[i]) * w).sum();
                let span = Span::of(&taps).sum(&line);
                assert!(
                    (direct - span).abs() < 1e-9,
                    "{from}->{to}: {direct} vs {span}"
                );
            }
        }
    }

    /// A receipt-like page: dark words on light paper, in lines, laid out by `seed`, at any
    /// size the same picture.
    fn photo(width: u32, height: u32, seed: u32) -> image::RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        // Words as (line, start, end) in a 100 x 60 layout grid.
        let mut words = Vec::new();
        for line in 0..30u32 {
            let mut at = 4 + next() % 6;
            while at < 92 {
                let len = 3 + next() % 9;
                words.push((line * 2, at, (at + len).min(96)));
                at += len + 2 + next() % 4;
            }
        }
        image::RgbImage::from_fn(width, height, |x, y| {
            let (gx, gy) = (x * 100 / width, y * 60 / height);
            let ink = words
                .iter()
                .any(|&(line, start, end)| gy == line && gx >= start && gx < end);
            let g = if ink { 30 } else { 235 };
            image::Rgb([g, g, g])
        })
    }

    fn encode_jpeg(img: &image::RgbImage, quality: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(img)
            .unwrap();
        out
    }

    #[test]
    fn a_copy_re_encoded_or_halved_is_the_same_and_another_picture_is_not() {
        let limits = Limits::default();
        let original = photo(1200, 900, 1);
        let of = |bytes: &[u8], media| fingerprint(bytes, media, &limits).unwrap().unwrap();
        let reference = of(&encode_jpeg(&original, 92), MediaType::Jpeg);
        let requality = of(&encode_jpeg(&original, 60), MediaType::Jpeg);
        let half =
            image::imageops::resize(&original, 600, 450, image::imageops::FilterType::Triangle);
        let halved = of(&encode_jpeg(&half, 85), MediaType::Jpeg);
        let mut png = Vec::new();
        original
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let lossless = of(&png, MediaType::Png);
        for same in [&requality, &halved, &lossless] {
            let bits = (reference.hash ^ same.hash).count_ones();
            let distance = signature_distance(&reference.signature, &same.signature);
            assert!(
                bits <= 4 && distance <= 8,
                "{bits} bits, distance {distance}"
            );
        }
        let other = of(&encode_jpeg(&photo(1200, 900, 2), 92), MediaType::Jpeg);
        assert!(signature_distance(&reference.signature, &other.signature) > 20);
    }
}
