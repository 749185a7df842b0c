//! Validation of a complete upload: the bytes match the declared type, images decode within the
//! pixel limit (checked from the header first), PDFs parse and are not encrypted.

use crate::header::{JpegLayout, jpeg_is_complete, jpeg_layout};
use crate::{Limits, MediaType, PipelineError, png_scan, sniff};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, metadata::Orientation};
use std::io::Cursor;

/// What validation learned, and for a type stored in another form, that form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The type stored: the declared (and sniffed) type, or what it is converted to (see
    /// [`MediaType::stored_as`]).
    pub media: MediaType,
    /// Pixel width as stored, before any EXIF orientation (0 for PDFs; for a PDF made of a TIFF,
    /// the first page's).
    pub width: u32,
    /// Pixel height as stored, before any EXIF orientation (0 for PDFs; for a PDF made of a
    /// TIFF, the first page's).
    pub height: u32,
    /// Pages (1 for images).
    pub page_count: u32,
    /// The bytes to store if they are not the upload's own: a HEIC's JPEG, a TIFF's PDF, a
    /// GIF's PNG.
    pub converted: Option<Vec<u8>>,
    /// The picture's fingerprint (see [`crate::fingerprint`]): of a JPEG or PNG (a HEIC's JPEG,
    /// a GIF's PNG), or of a PDF whose first page is one JPEG; `None` otherwise.
    pub fingerprint: Option<crate::Fingerprint>,
}

/// Validates a complete upload declared as `declared`, and makes the form a HEIC, TIFF or GIF is
/// stored in (see [`MediaType::stored_as`]): a HEIC's primary image as an upright JPEG of the
/// same size at quality 90 without metadata, a TIFF as a PDF of its pages (see
/// [`crate::tiff_pdf`]), a GIF's first frame as an indexed PNG.
///
/// The sniffed type must equal `declared` ([`PipelineError::ContentTypeMismatch`] otherwise).
/// Images are refused with [`PipelineError::TooManyPixels`] from their header alone, then proven
/// decodable ([`PipelineError::Corrupt`] if not, or if a JPEG is truncated): a JPEG by
/// entropy-decoding every coefficient at 1/8 scale (see [`crate::jpeg::verify`]), a PNG by
/// checking every chunk's CRC and inflating its image data row by row without building the
/// image (see [`crate::png_scan::verify`]), a WebP by decoding it whole. PDFs must parse,
/// have pages and not be encrypted ([`PipelineError::EncryptedPdf`], also for PDFs with only an
/// owner password).
pub fn inspect(
    bytes: &[u8],
    declared: MediaType,
    limits: &Limits,
) -> Result<Inspected, PipelineError> {
    inspect_scanned(bytes, declared, limits, false)
}

/// [`inspect`] after [`crate::estimate`] of the same buffer: a PDF whose guard scan the estimate
/// already passed (same bytes, same limits) is not scanned again.
pub fn inspect_estimated(
    bytes: &[u8],
    declared: MediaType,
    limits: &Limits,
    estimate: &crate::Estimate,
) -> Result<Inspected, PipelineError> {
    inspect_scanned(
        bytes,
        declared,
        limits,
        estimate.scanned(bytes, &limits.pdf),
    )
}

fn inspect_scanned(
    bytes: &[u8],
    declared: MediaType,
    limits: &Limits,
    scanned: bool,
) -> Result<Inspected, PipelineError> {
    check_type(bytes, declared)?;
    match declared {
        MediaType::Heic => {
            let (jpeg, width, height) = crate::heic::to_jpeg(bytes, limits)?;
            let fingerprint = fingerprint_of(&jpeg, MediaType::Jpeg, limits);
            return Ok(Inspected {
                fingerprint,
                ..converted(MediaType::Jpeg, jpeg, (width, height), 1)
            });
        }
        MediaType::Tiff => {
            let pdf = crate::tiff_pdf::to_pdf(bytes, limits)?;
            return Ok(converted(MediaType::Pdf, pdf.bytes, pdf.first, pdf.pages));
        }
        MediaType::Gif => {
            let (png, width, height) = crate::gif_frame::to_png(bytes, limits)?;
            let fingerprint = fingerprint_of(&png, MediaType::Png, limits);
            return Ok(Inspected {
                fingerprint,
                ..converted(MediaType::Png, png, (width, height), 1)
            });
        }
        _ => {}
    }
    if declared == MediaType::Pdf {
        if !scanned {
            crate::pdf_guard::scan(bytes, &limits.pdf)?;
        }
        let doc = load_pdf_scanned(bytes, limits)?;
        let pages = u32::try_from(pages(&doc).len()).unwrap_or(u32::MAX);
        let fingerprint = crate::fingerprint::pdf_first_page(&doc, limits);
        return Ok(Inspected {
            media: declared,
            width: 0,
            height: 0,
            page_count: pages,
            converted: None,
            fingerprint,
        });
    }
    let (width, height, fingerprint) = match declared {
        MediaType::Jpeg => {
            let cost = checked_cost(bytes, declared, limits)?;
            let fingerprint = crate::fingerprint::verify_jpeg(bytes, cost.check_bytes, limits)?;
            (cost.width, cost.height, fingerprint)
        }
        MediaType::Png => {
            let cost = checked_cost(bytes, declared, limits)?;
            png_scan::verify(bytes)?;
            (
                cost.width,
                cost.height,
                fingerprint_of(bytes, declared, limits),
            )
        }
        _ => {
            let (image, _) = decode(bytes, declared, limits)?;
            (image.width(), image.height(), None)
        }
    };
    Ok(Inspected {
        media: declared,
        width,
        height,
        page_count: 1,
        converted: None,
        fingerprint,
    })
}

/// The fingerprint of checked bytes; `None` if there is none to take (it never refuses what the
/// checks passed).
fn fingerprint_of(bytes: &[u8], media: MediaType, limits: &Limits) -> Option<crate::Fingerprint> {
    crate::fingerprint::fingerprint(bytes, media, limits)
        .ok()
        .flatten()
}

fn converted(
    media: MediaType,
    bytes: Vec<u8>,
    (width, height): (u32, u32),
    pages: u32,
) -> Inspected {
    Inspected {
        media,
        width,
        height,
        page_count: pages,
        converted: Some(bytes),
        fingerprint: None,
    }
}

/// Refuses bytes that are not of the declared type.
pub(crate) fn check_type(bytes: &[u8], declared: MediaType) -> Result<(), PipelineError> {
    match sniff(bytes) {
        Some(found) if found == declared => Ok(()),
        detected => Err(PipelineError::ContentTypeMismatch { declared, detected }),
    }
}

fn format(media: MediaType) -> Result<ImageFormat, PipelineError> {
    match media {
        MediaType::Jpeg => Ok(ImageFormat::Jpeg),
        MediaType::Png => Ok(ImageFormat::Png),
        MediaType::Webp => Ok(ImageFormat::WebP),
        MediaType::Pdf | MediaType::Heic | MediaType::Tiff | MediaType::Gif => {
            Err(PipelineError::UnsupportedMediaType)
        }
    }
}

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

fn reader(
    bytes: &[u8],
    media: MediaType,
    max_alloc: u64,
) -> Result<ImageReader<Cursor<&[u8]>>, PipelineError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format(media)?);
    let mut decode_limits = image::Limits::default();
    // Even if a decoder learns a larger size than the header check saw, it cannot allocate more
    // than the image the header announced needs.
    decode_limits.max_alloc = Some(max_alloc);
    reader.limits(decode_limits);
    Ok(reader)
}

/// What decoding an image will take, from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeCost {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes a whole decode allocates at most: the decoded pixels (and, for progressive JPEGs,
    /// their coefficients) plus some slack.
    pub bytes: u64,
    /// Bytes proving the image decodable takes (see [`inspect`]), which builds no image for a
    /// JPEG or PNG: libjpeg's tables and rows at 1/8 scale, plus the coefficients of a
    /// progressive or multi-scan JPEG; a PNG's inflater and its metadata allowance; a whole
    /// decode for other formats.
    pub check_bytes: u64,
    /// Bytes the decode for a conversion takes (see [`crate::to_webp`]): for a JPEG that libjpeg
    /// decodes at a reduced scale, the scaled pixels and libjpeg's own memory; else `bytes`.
    pub convert_bytes: u64,
}

/// Slack on top of the decoded image that a whole decode may allocate (row buffers, tables).
const DECODER_SLACK: u64 = 16 << 20;

/// libjpeg's memory besides whole-image arrays: Huffman and quantisation tables, the sample rows
/// of a few MCU rows, the colour and upsampling buffers (rows per component at most 64 bytes a
/// pixel column on top of this).
const JPEG_DECODER_BYTES: u64 = 4 << 20;

/// A PNG check's memory besides the metadata it inflates: the inflater and its window.
const PNG_CHECK_BYTES: u64 = 1 << 20;

/// libjpeg's own memory (no output image) for a frame laid out as `layout`.
fn jpeg_decoder_bytes(layout: &JpegLayout) -> u64 {
    let rows = u64::from(layout.width) * u64::from(layout.components.max(1)) * 64;
    let coefficients = if layout.buffered {
        layout.coefficient_bytes
    } else {
        0
    };
    JPEG_DECODER_BYTES + rows + coefficients
}

/// The size and decoding cost of an image from its header alone, refusing images over the
/// pixel or decoded-bytes limits (and PNGs whose metadata inflates past its limit).
pub fn decode_cost(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<DecodeCost, PipelineError> {
    // PNG and JPEG headers are read by hand, so nothing else has to parse a hostile file before
    // the limits are enforced.
    let mut jpeg = None;
    match media {
        MediaType::Heic => {
            let header = crate::heic::header(bytes, limits)?;
            let output = u64::from(header.width) * u64::from(header.height) * 3;
            return Ok(DecodeCost {
                width: header.width,
                height: header.height,
                bytes: header.decode_bytes,
                check_bytes: header.decode_bytes + output / 2,
                convert_bytes: header.decode_bytes,
            });
        }
        // Every step decodes these whole (a GIF's first frame; a TIFF's pages one at a time).
        MediaType::Gif | MediaType::Tiff => {
            let (width, height, cost) = if media == MediaType::Gif {
                let canvas = crate::gif_frame::canvas(bytes, limits)?;
                (canvas.0, canvas.1, crate::gif_frame::memory_cost(canvas))
            } else {
                crate::tiff_pdf::header(bytes, limits)?
            };
            return Ok(DecodeCost {
                width,
                height,
                bytes: cost,
                check_bytes: cost,
                convert_bytes: cost,
            });
        }
        _ => {}
    }
    let (width, height, bytes_per_pixel) = match media {
        MediaType::Png => {
            let header = png_scan::scan(bytes, limits.max_ancillary_bytes)?;
            (header.width, header.height, header.bytes_per_pixel)
        }
        MediaType::Jpeg => {
            let layout = jpeg_layout(bytes).ok_or_else(|| corrupt("no JPEG frame header"))?;
            jpeg = Some(layout);
            // Output is 8-bit; progressive decoding also keeps 16-bit coefficients.
            let per_sample = if layout.progressive { 3 } else { 1 };
            let components = u64::from(layout.components.max(3));
            (layout.width, layout.height, components * per_sample)
        }
        _ => {
            let (width, height) = reader(bytes, media, DECODER_SLACK)?
                .into_dimensions()
                .map_err(corrupt)?;
            (width, height, 4)
        }
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(PipelineError::TooManyPixels { width, height });
    }
    if width == 0 || height == 0 {
        return Err(PipelineError::Corrupt("empty image".to_owned()));
    }
    let decoded = pixels * bytes_per_pixel;
    if decoded > limits.max_image_bytes {
        return Err(PipelineError::TooComplex {
            what: "decoded image",
        });
    }
    let whole = decoded + DECODER_SLACK;
    let (check_bytes, convert_bytes) = match (media, jpeg) {
        (MediaType::Jpeg, Some(layout)) => {
            let decoder = jpeg_decoder_bytes(&layout);
            // libjpeg turns only YCbCr, RGB and grey into RGB; other JPEGs are decoded whole.
            let convert = if matches!(layout.components, 1 | 3) {
                let stored = (width, height);
                let numerator = crate::webp::jpeg_scale(stored, limits);
                let scaled = |side: u32| (u64::from(side) * u64::from(numerator)).div_ceil(8);
                decoder + scaled(width) * scaled(height) * 3
            } else {
                whole
            };
            (decoder.min(whole), convert.min(whole))
        }
        (MediaType::Png, _) => (
            (PNG_CHECK_BYTES + limits.max_ancillary_bytes).min(whole),
            whole,
        ),
        _ => (whole, whole),
    };
    Ok(DecodeCost {
        width,
        height,
        bytes: whole,
        check_bytes,
        convert_bytes,
    })
}

/// [`decode_cost`], and for a JPEG the check that it is not truncated.
fn checked_cost(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<DecodeCost, PipelineError> {
    let cost = decode_cost(bytes, media, limits)?;
    if media == MediaType::Jpeg && !jpeg_is_complete(bytes) {
        return Err(corrupt("truncated JPEG"));
    }
    Ok(cost)
}

/// An image decoder that has read the headers only, after [`checked_cost`] passed; also
/// returns the EXIF orientation and the cost.
fn open<'a>(
    bytes: &'a [u8],
    media: MediaType,
    limits: &Limits,
) -> Result<(impl ImageDecoder + 'a, Orientation, DecodeCost), PipelineError> {
    open_checked(bytes, media, checked_cost(bytes, media, limits)?)
}

/// [`open`] after the cost check (`cost` of these bytes).
fn open_checked(
    bytes: &[u8],
    media: MediaType,
    cost: DecodeCost,
) -> Result<(impl ImageDecoder + '_, Orientation, DecodeCost), PipelineError> {
    let mut decoder = reader(bytes, media, cost.bytes)?
        .into_decoder()
        .map_err(corrupt)?;
    // The decoder allocates what it reads from the file, in one piece and unchecked: it must
    // see the image the header check saw (a file can carry two headers for two readers).
    if decoder.dimensions() != (cost.width, cost.height) || decoder.total_bytes() > cost.bytes {
        return Err(corrupt(
            "the decoder reads another image size than the header",
        ));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok((decoder, orientation, cost))
}

/// The decoding cost and EXIF orientation, from the headers only (the pixels are not decoded).
pub(crate) fn read_header(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<(DecodeCost, Orientation), PipelineError> {
    open(bytes, media, limits).map(|(_, orientation, cost)| (cost, orientation))
}

/// [`read_header`] of a JPEG's first bytes: its headers up to the first scan, without the
/// check that the file is complete.
pub(crate) fn read_header_prefix(
    prefix: &[u8],
    limits: &Limits,
) -> Result<(DecodeCost, Orientation), PipelineError> {
    check_type(prefix, MediaType::Jpeg)?;
    let cost = decode_cost(prefix, MediaType::Jpeg, limits)?;
    open_checked(prefix, MediaType::Jpeg, cost).map(|(_, orientation, cost)| (cost, orientation))
}

/// [`inspect`] of a whole JPEG whose check ran as it arrived
/// ([`crate::verify_jpeg_arriving`] from `start`, with the outcome `check`): the whole file's
/// type and headers are checked again, and must be the headers the check started from (libjpeg
/// then read exactly these bytes, as [`inspect`] would have had it read them); then the check's
/// outcome is the file's. A file whose headers differ, or that was not checked that way, is
/// inspected whole.
pub fn inspect_arrived_jpeg(
    bytes: &[u8],
    limits: &Limits,
    start: &crate::JpegStart,
    check: Result<crate::ArrivedCheck, PipelineError>,
) -> Result<Inspected, PipelineError> {
    check_type(bytes, MediaType::Jpeg)?;
    let (cost, orientation) = read_header(bytes, MediaType::Jpeg, limits)?;
    if cost != start.cost || orientation != start.orientation {
        return inspect(bytes, MediaType::Jpeg, limits);
    }
    match check? {
        crate::ArrivedCheck::Passed(fingerprint) => Ok(Inspected {
            media: MediaType::Jpeg,
            width: cost.width,
            height: cost.height,
            page_count: 1,
            converted: None,
            fingerprint,
        }),
        crate::ArrivedCheck::Unchecked => inspect(bytes, MediaType::Jpeg, limits),
    }
}

/// Decodes a whole image (after the header checks) with its EXIF orientation (not applied).
pub(crate) fn decode(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<(DynamicImage, Orientation), PipelineError> {
    let (decoder, orientation, _) = open(bytes, media, limits)?;
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    Ok((image, orientation))
}

/// Parses an uploaded PDF under the limits (see [`crate::pdf_guard`]), refusing encrypted ones
/// (even those lopdf could decrypt on its own) and ones with too many pages.
pub(crate) fn load_pdf(bytes: &[u8], limits: &Limits) -> Result<lopdf::Document, PipelineError> {
    crate::pdf_guard::scan(bytes, &limits.pdf)?;
    load_pdf_scanned(bytes, limits)
}

/// [`load_pdf`] for bytes the guard has already passed under `limits`.
fn load_pdf_scanned(bytes: &[u8], limits: &Limits) -> Result<lopdf::Document, PipelineError> {
    let doc = load_pdf_unscanned(bytes, limits)?;
    if pages(&doc).len() > limits.pdf.max_pages as usize {
        return Err(PipelineError::TooComplex { what: "PDF pages" });
    }
    Ok(doc)
}

/// Makes every reference to an object the file does not hold the null object, as readers take
/// it (ISO 32000-1, 7.3.10): a page tree kid that names no object is then no page, so the pages
/// counted are the pages every reader shows, and renumbering the file for a report can never
/// make a dangling reference name one of its other objects.
fn null_dangling(doc: &mut lopdf::Document) -> Result<(), PipelineError> {
    fn walk(
        object: &mut lopdf::Object,
        held: &std::collections::HashSet<lopdf::ObjectId>,
        depth: u32,
    ) {
        if depth > 256 {
            return;
        }
        match object {
            lopdf::Object::Reference(id) if !held.contains(id) => *object = lopdf::Object::Null,
            lopdf::Object::Array(items) => {
                for item in items {
                    walk(item, held, depth + 1);
                }
            }
            lopdf::Object::Dictionary(dict) => {
                for (_, value) in dict.iter_mut() {
                    walk(value, held, depth + 1);
                }
            }
            lopdf::Object::Stream(stream) => {
                for (_, value) in stream.dict.iter_mut() {
                    walk(value, held, depth + 1);
                }
            }
            _ => {}
        }
    }
    let held: std::collections::HashSet<lopdf::ObjectId> = doc.objects.keys().copied().collect();
    for object in doc.objects.values_mut() {
        crate::meter::check()?;
        walk(object, &held, 0);
    }
    Ok(())
}

/// Parses a PDF this service wrote itself (a report), without the lexical pre-scan.
pub(crate) fn load_pdf_unscanned(
    bytes: &[u8],
    limits: &Limits,
) -> Result<lopdf::Document, PipelineError> {
    let options = lopdf::LoadOptions {
        max_decompressed_size: usize::try_from(limits.pdf.max_stream_inflated_bytes).ok(),
        ..lopdf::LoadOptions::default()
    };
    let doc = match lopdf::Document::load_mem_with_options(bytes, options) {
        Ok(doc) => doc,
        Err(
            lopdf::Error::Decryption(_)
            | lopdf::Error::InvalidPassword
            | lopdf::Error::AlreadyEncrypted
            | lopdf::Error::UnsupportedSecurityHandler(_),
        ) => return Err(PipelineError::EncryptedPdf),
        Err(err) => return Err(corrupt(err)),
    };
    // lopdf decrypts owner-password-only files silently (`was_encrypted`) and loads user-password
    // files as a trailer with no readable objects (`/Encrypt` still there).
    if doc.is_encrypted() || doc.was_encrypted() || doc.trailer.has(b"Encrypt") {
        return Err(PipelineError::EncryptedPdf);
    }
    let mut doc = doc;
    null_dangling(&mut doc)?;
    if pages(&doc).is_empty() {
        return Err(PipelineError::Corrupt("PDF has no pages".to_owned()));
    }
    Ok(doc)
}

/// The document's pages in order, each page object once: a page tree that reaches one page
/// twice (a kid listed twice, or a cycle) still has that page once, as readers show it, and a
/// page object can have only one parent in the report it is moved to.
pub(crate) fn pages(doc: &lopdf::Document) -> Vec<lopdf::ObjectId> {
    let mut seen = std::collections::HashSet::new();
    doc.get_pages()
        .into_values()
        .filter(|id| seen.insert(*id))
        .collect()
}
