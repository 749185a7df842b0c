//! HEIC/HEIF photos through libheif (1.23, built with the crate; HEVC decoded by libde265): the
//! primary image, with the file's rotation, mirroring and crop applied as libheif applies them
//! (`irot`, `imir`, `clap`; the EXIF orientation of a HEIF is informative only and is not
//! applied on top), as 8-bit RGB, stored as a JPEG or converted further.
//!
//! libheif's security limits are set on every context before the file is read: the image size
//! (the pixel limit), the number of items and tiles, the largest block it may allocate and the
//! memory it may hold in all, so a hostile file is refused while libheif parses it, not after.

use crate::{Limits, PipelineError};
use libheif_rs::{
    ColorSpace, DecodingOptions, HeifContext, HeifError, HeifErrorCode, HeifErrorSubCode, LibHeif,
    RgbChroma, SecurityLimits,
};

/// Items of one file (image tiles, thumbnails, metadata, depth maps): an iPhone photo has about
/// a hundred.
pub(crate) const MAX_ITEMS: u32 = 1000;

/// Tiles of one grid image: a 48 MP photo in 512x512 tiles has 192.
pub(crate) const MAX_TILES: u64 = 1024;

/// libheif's own memory besides the decoded image: the HEVC decoder's reference pictures of one
/// tile, the file's boxes, the YCbCr planes before conversion.
const LIBHEIF_BYTES: u64 = 24 << 20;

/// JPEG quality of a HEIC stored as JPEG.
pub(crate) const JPEG_QUALITY: u8 = 90;

/// The primary image's size and what decoding it takes, from the file's boxes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeifHeader {
    /// Width with the file's transformations applied.
    pub width: u32,
    /// Height with the file's transformations applied.
    pub height: u32,
    /// Bytes decoding takes at most: the YCbCr planes, the RGB(A) output and libheif's own.
    pub decode_bytes: u64,
}

fn refused(err: HeifError) -> PipelineError {
    match err.sub_code {
        HeifErrorSubCode::SecurityLimitExceeded => PipelineError::TooComplex {
            what: "HEIF structure",
        },
        _ => match err.code {
            HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType => {
                PipelineError::Unsupported("this kind of HEIF image")
            }
            _ => PipelineError::Corrupt(format!("HEIF: {}", err.message)),
        },
    }
}

/// A context that has read `bytes` under the limits.
fn context<'a>(bytes: &'a [u8], limits: &Limits) -> Result<HeifContext<'a>, PipelineError> {
    let mut context = HeifContext::new().map_err(refused)?;
    let mut security = SecurityLimits::new();
    security.set_max_image_size_pixels(limits.max_pixels);
    security.set_max_items(MAX_ITEMS);
    security.set_max_number_of_tiles(MAX_TILES);
    security.set_max_memory_block_size(limits.max_image_bytes);
    security.set_max_total_memory(limits.max_image_bytes.saturating_add(LIBHEIF_BYTES));
    context.set_security_limits(&security).map_err(refused)?;
    // The step's own thread only: an upload takes the CPU its admission slot stands for, and
    // the tiles of a grid image are decoded one after the other (0: no helper thread).
    context.set_max_decoding_threads(0);
    context.read_bytes(bytes).map_err(refused)?;
    Ok(context)
}

/// The primary image's size, refused over the pixel or decoded-bytes limits.
pub(crate) fn header(bytes: &[u8], limits: &Limits) -> Result<HeifHeader, PipelineError> {
    let context = context(bytes, limits)?;
    let handle = context.primary_image_handle().map_err(refused)?;
    checked_size(&handle, limits)
}

fn checked_size(
    handle: &libheif_rs::ImageHandle,
    limits: &Limits,
) -> Result<HeifHeader, PipelineError> {
    let (width, height) = (handle.width(), handle.height());
    if width == 0 || height == 0 {
        return Err(PipelineError::Corrupt("empty image".to_owned()));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(PipelineError::TooManyPixels { width, height });
    }
    // YCbCr planes (4:4:4 at most, 16-bit samples for a high bit depth) and 8-bit RGBA.
    let decoded = pixels * 6 + pixels * 4;
    if pixels * 4 > limits.max_image_bytes {
        return Err(PipelineError::TooComplex {
            what: "decoded image",
        });
    }
    Ok(HeifHeader {
        width,
        height,
        decode_bytes: decoded + LIBHEIF_BYTES,
    })
}

/// A decoded primary image: 8-bit RGB (alpha, if the file has it, laid over white), row after
/// row, upright.
pub(crate) struct Rgb {
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Decodes the primary image.
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Rgb, PipelineError> {
    let context = context(bytes, limits)?;
    let handle = context.primary_image_handle().map_err(refused)?;
    let expected = checked_size(&handle, limits)?;
    let alpha = handle.has_alpha_channel();
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let mut options = DecodingOptions::new();
    if let Some(options) = options.as_mut() {
        options.set_convert_hdr_to_8bit(true);
        options.set_strict_decoding(false);
        options.set_ignore_transformations(false);
        // libde265 decodes with one thread too.
        options.set_num_codec_threads(1);
    }
    let image = LibHeif::new()
        .decode(&handle, ColorSpace::Rgb(chroma), options)
        .map_err(refused)?;
    let (width, height) = (image.width(), image.height());
    if (width, height) != (expected.width, expected.height) {
        return Err(PipelineError::Corrupt(
            "HEIF decoded to another size than its header".to_owned(),
        ));
    }
    let planes = image.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| PipelineError::Corrupt("HEIF decoded to no pixels".to_owned()))?;
    let channels = if alpha { 4 } else { 3 };
    let row = width as usize * channels;
    if plane.stride < row || plane.data.len() < plane.stride * (height as usize - 1) + row {
        return Err(PipelineError::Corrupt(
            "HEIF decoded to an unexpected layout".to_owned(),
        ));
    }
    let mut pixels = Vec::with_capacity(width as usize * 3 * height as usize);
    for y in 0..height as usize {
        let line = plane
            .data
            .get(y * plane.stride..y * plane.stride + row)
            .ok_or_else(|| PipelineError::Corrupt("HEIF decoded short".to_owned()))?;
        if alpha {
            pixels.extend(crate::image_page::over_white(line, 4));
        } else {
            pixels.extend_from_slice(line);
        }
        crate::meter::check()?;
    }
    Ok(Rgb {
        pixels,
        width,
        height,
    })
}

/// A HEIC as the JPEG it is stored as: upright, same size, quality [`JPEG_QUALITY`], no
/// metadata; with its size.
pub(crate) fn to_jpeg(bytes: &[u8], limits: &Limits) -> Result<(Vec<u8>, u32, u32), PipelineError> {
    let image = decode(bytes, limits)?;
    let jpeg = crate::jpeg::encode(&image.pixels, (image.width, image.height), 3, JPEG_QUALITY)?;
    Ok((jpeg, image.width, image.height))
}
