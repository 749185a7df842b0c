//! Validation of a complete upload: the bytes match the declared type, images decode within the
//! pixel limit (checked from the header first), PDFs parse and are not encrypted.

use crate::header::{jpeg_is_complete, jpeg_layout, png_dimensions};
use crate::{Limits, MediaType, PipelineError, sniff};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, metadata::Orientation};
use std::io::Cursor;

/// What validation learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The (declared and sniffed) type.
    pub media: MediaType,
    /// Pixel width as stored, before any EXIF orientation (0 for PDFs).
    pub width: u32,
    /// Pixel height as stored, before any EXIF orientation (0 for PDFs).
    pub height: u32,
    /// Pages (1 for images).
    pub page_count: u32,
}

/// Validates a complete upload declared as `declared`.
///
/// The sniffed type must equal `declared` ([`PipelineError::ContentTypeMismatch`] otherwise).
/// Images are refused with [`PipelineError::TooManyPixels`] from their header alone, then fully
/// decoded ([`PipelineError::Corrupt`] if that fails or a JPEG is truncated). PDFs must parse,
/// have pages and not be encrypted ([`PipelineError::EncryptedPdf`], also for PDFs with only an
/// owner password).
pub fn inspect(
    bytes: &[u8],
    declared: MediaType,
    limits: &Limits,
) -> Result<Inspected, PipelineError> {
    check_type(bytes, declared)?;
    if declared == MediaType::Pdf {
        let doc = load_pdf(bytes)?;
        let pages = u32::try_from(doc.get_pages().len()).unwrap_or(u32::MAX);
        return Ok(Inspected {
            media: declared,
            width: 0,
            height: 0,
            page_count: pages,
        });
    }
    let (image, _) = decode(bytes, declared, limits)?;
    Ok(Inspected {
        media: declared,
        width: image.width(),
        height: image.height(),
        page_count: 1,
    })
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
        MediaType::Pdf => Err(PipelineError::UnsupportedMediaType),
    }
}

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

fn reader<'a>(
    bytes: &'a [u8],
    media: MediaType,
    limits: &Limits,
) -> Result<ImageReader<Cursor<&'a [u8]>>, PipelineError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format(media)?);
    let mut decode_limits = image::Limits::default();
    // Even if a decoder learns a larger size than the header check saw, it cannot allocate more
    // than the pixel cap allows at 16-bit RGBA.
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(decode_limits);
    Ok(reader)
}

/// Width and height from the header alone, refusing images over the pixel limit.
fn header_dimensions(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<(u32, u32), PipelineError> {
    // PNG and JPEG sizes are read from their headers by hand, so nothing else has to parse a
    // hostile file before the pixel cap is enforced.
    let (width, height) = match media {
        MediaType::Png => png_dimensions(bytes).ok_or_else(|| corrupt("no PNG header"))?,
        MediaType::Jpeg => jpeg_layout(bytes)
            .map(|layout| (layout.width, layout.height))
            .ok_or_else(|| corrupt("no JPEG frame header"))?,
        _ => reader(bytes, media, limits)?
            .into_dimensions()
            .map_err(corrupt)?,
    };
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(PipelineError::TooManyPixels { width, height });
    }
    if width == 0 || height == 0 {
        return Err(PipelineError::Corrupt("empty image".to_owned()));
    }
    Ok((width, height))
}

/// An image decoder that has read the headers only, after the pixel cap and (for JPEG) the
/// completeness checks passed; also returns the EXIF orientation.
fn open<'a>(
    bytes: &'a [u8],
    media: MediaType,
    limits: &Limits,
) -> Result<(impl ImageDecoder + 'a, Orientation), PipelineError> {
    header_dimensions(bytes, media, limits)?;
    if media == MediaType::Jpeg && !jpeg_is_complete(bytes) {
        return Err(corrupt("truncated JPEG"));
    }
    let mut decoder = reader(bytes, media, limits)?
        .into_decoder()
        .map_err(corrupt)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok((decoder, orientation))
}

/// The EXIF orientation, from the headers only (the pixels are not decoded).
pub(crate) fn orientation(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<Orientation, PipelineError> {
    open(bytes, media, limits).map(|(_, orientation)| orientation)
}

/// Decodes a whole image (after the header checks) with its EXIF orientation (not applied).
pub(crate) fn decode(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<(DynamicImage, Orientation), PipelineError> {
    let (decoder, orientation) = open(bytes, media, limits)?;
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    Ok((image, orientation))
}

/// Parses a PDF, refusing encrypted ones (even those lopdf could decrypt on its own).
pub(crate) fn load_pdf(bytes: &[u8]) -> Result<lopdf::Document, PipelineError> {
    let doc = match lopdf::Document::load_mem(bytes) {
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
    if doc.get_pages().is_empty() {
        return Err(PipelineError::Corrupt("PDF has no pages".to_owned()));
    }
    Ok(doc)
}
