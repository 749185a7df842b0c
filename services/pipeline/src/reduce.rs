//! Reducing an image to a largest side (Concur Receipts v4: 2,200 px): a JPEG or PNG with a side
//! over the limit is decoded (a large JPEG at a reduced DCT scale), resized on its long side with
//! Lanczos3, turned upright (the new file carries no EXIF, so the orientation is applied) and
//! encoded again in its own format; anything else, or a small image, is left as it is.

use crate::webp::{decode_for_target, fit_upright};
use crate::{Limits, MediaType, PipelineError};
use fast_image_resize::PixelType;

/// JPEG quality of a reduced JPEG.
pub const REDUCED_JPEG_QUALITY: u8 = 90;

/// A reduced image.
#[derive(Debug, Clone)]
pub struct Reduced {
    /// The new file (no metadata).
    pub bytes: Vec<u8>,
    /// Its type (the input's).
    pub media: MediaType,
    /// Its size in pixels, upright.
    pub width: u32,
    /// See `width`.
    pub height: u32,
}

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

/// The limits a reduction to `max_side` runs under (its memory estimate uses the same).
pub fn reduction_limits(limits: &Limits, max_side: u32) -> Limits {
    Limits {
        max_edge: max_side,
        ..*limits
    }
}

/// `bytes` (a JPEG or PNG) reduced so that no side is over `max_side`; `None` if no side is
/// over it, if `max_side` is 0, or for other types.
pub fn reduce(
    bytes: &[u8],
    media: MediaType,
    max_side: u32,
    limits: &Limits,
) -> Result<Option<Reduced>, PipelineError> {
    if max_side == 0 || !matches!(media, MediaType::Jpeg | MediaType::Png) {
        return Ok(None);
    }
    let limits = reduction_limits(limits, max_side);
    let decoded = decode_for_target(bytes, media, &limits)?;
    if decoded.stored.0.max(decoded.stored.1) <= max_side {
        return Ok(None);
    }
    let pixel_type = decoded.pixel_type;
    let (pixels, (width, height)) = fit_upright(decoded, &limits)?;
    let bytes = match media {
        MediaType::Jpeg => {
            let rgb = if pixel_type == PixelType::U8x4 {
                pixels
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect()
            } else {
                pixels
            };
            crate::jpeg::encode(&rgb, (width, height), 3, REDUCED_JPEG_QUALITY)?
        }
        _ => {
            let mut out = Vec::new();
            {
                let mut encoder = png::Encoder::new(&mut out, width, height);
                encoder.set_color(if pixel_type == PixelType::U8x4 {
                    png::ColorType::Rgba
                } else {
                    png::ColorType::Rgb
                });
                encoder.set_depth(png::BitDepth::Eight);
                encoder.set_compression(png::Compression::Balanced);
                let mut writer = encoder.write_header().map_err(corrupt)?;
                writer.write_image_data(&pixels).map_err(corrupt)?;
                writer.finish().map_err(corrupt)?;
            }
            out
        }
    };
    Ok(Some(Reduced {
        bytes,
        media,
        width,
        height,
    }))
}
