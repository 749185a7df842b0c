//! Conversion for workspace receipts: EXIF orientation applied, metadata dropped, long edge at
//! most `max_edge` (never upscaled), lossy WebP at `webp_quality` through libwebp.

use crate::inspect::{self, check_type};
use crate::{Limits, MediaType, PipelineError, jpeg};
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage, RgbaImage};

/// A converted image.
#[derive(Debug, Clone)]
pub struct WebpOutput {
    /// The WebP file (no EXIF, no XMP, no ICC).
    pub bytes: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// WebP cannot store an edge longer than this.
const WEBP_MAX_EDGE: u32 = 16_383;

/// libwebp effort (0 = fastest, 6 = slowest). The default, 4, spends most of the conversion time
/// in the encoder; 2 encodes a 2048x1536 photo about 3x faster for about 3% more bytes at the
/// same SSIM (see `bench/README.md`).
pub const WEBP_METHOD: i32 = 2;

/// libwebp's lossy defaults at `quality`, with effort [`WEBP_METHOD`].
pub fn lossy_config(quality: f32) -> Result<webp::WebPConfig, PipelineError> {
    let mut config = webp::WebPConfig::new()
        .map_err(|()| PipelineError::Corrupt("WebP encoder set-up failed".to_owned()))?;
    config.lossless = 0;
    config.alpha_compression = 1;
    config.quality = quality.clamp(0.0, 100.0);
    config.method = WEBP_METHOD;
    Ok(config)
}

/// Converts a JPEG, PNG or WebP to an upright, downscaled, lossy WebP without metadata.
///
/// The pixel cap is checked from the header before decoding, as in [`crate::inspect`]. A YCbCr
/// or grey JPEG stays in YCbCr from decoder to encoder (see [`crate::yuv`]), decoded at the
/// reduced scale [`decode_for_target`] would use; other images go through RGB. The EXIF
/// orientation is applied; alpha is kept only if some pixel is not fully opaque; the long edge is
/// brought down to `max_edge` (Lanczos3), never up. A PDF is refused with
/// [`PipelineError::UnsupportedMediaType`].
pub fn to_webp(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<WebpOutput, PipelineError> {
    if media == MediaType::Jpeg {
        let header = jpeg_header(bytes, limits)?;
        let converted = crate::yuv::jpeg_to_webp(
            bytes,
            jpeg_scale(header.stored, limits),
            header.decode_bytes,
            target_size(header.stored, limits),
            header.orientation,
            limits,
        )?;
        if let Some(converted) = converted {
            return Ok(converted);
        }
    }
    let decoded = decode_for_target(bytes, media, limits)?;
    let pixel_type = decoded.pixel_type;
    let (pixels, (new_width, new_height)) = fit_upright(decoded, limits)?;
    let bytes = encode(
        &pixels,
        pixel_type,
        (new_width, new_height),
        &lossy_config(limits.webp_quality)?,
    )?;
    Ok(WebpOutput {
        bytes,
        width: new_width,
        height: new_height,
    })
}

/// What a JPEG's conversion reads from its header.
#[derive(Debug, Clone, Copy)]
pub struct JpegHeader {
    /// Size as stored.
    pub stored: (u32, u32),
    /// EXIF orientation, not applied.
    pub orientation: Orientation,
    /// What libjpeg's whole-image buffers may take.
    pub decode_bytes: u64,
}

/// The header checks of a JPEG's conversion (type, pixel cap, decode cost) and what they read.
pub fn jpeg_header(bytes: &[u8], limits: &Limits) -> Result<JpegHeader, PipelineError> {
    check_type(bytes, MediaType::Jpeg)?;
    let (cost, orientation) = inspect::read_header(bytes, MediaType::Jpeg, limits)?;
    Ok(JpegHeader {
        stored: (cost.width, cost.height),
        orientation,
        decode_bytes: cost.convert_bytes,
    })
}

/// An image decoded for conversion: 8-bit pixels in stored orientation, possibly already
/// reduced (see [`decode_for_target`]).
#[derive(Debug)]
pub struct Decoded {
    /// 8-bit RGB or RGBA, row after row.
    pub pixels: Vec<u8>,
    /// [`PixelType::U8x3`] or [`PixelType::U8x4`].
    pub pixel_type: PixelType,
    /// Size of `pixels`.
    pub size: (u32, u32),
    /// Size of the image as stored in the file.
    pub stored: (u32, u32),
    /// EXIF orientation, not applied.
    pub orientation: Orientation,
}

/// `decoded` brought to its [`target_size`] and turned upright: its pixels (of its pixel type)
/// and size. Resized in stored orientation, then oriented: rotating a 12 MP photo costs more
/// than rotating the 3 MP result, and the output is the same up to resampling order.
pub(crate) fn fit_upright(
    decoded: Decoded,
    limits: &Limits,
) -> Result<(Vec<u8>, (u32, u32)), PipelineError> {
    let target = target_size(decoded.stored, limits);
    let pixels = resize(decoded.pixels, decoded.pixel_type, decoded.size, target)?;
    orient(pixels, decoded.pixel_type, target, decoded.orientation)
}

/// The header checks, then the pixels the resize needs. A JPEG (YCbCr, RGB or grey) larger than
/// its target is decoded by libjpeg-turbo at the smallest scale M/8 that keeps both edges at
/// least at the target (5/8 for 4032x3024 to 2048x1536), so the inverse DCT makes most of the
/// reduction and the Lanczos3 resize does the rest; other images are decoded whole.
pub fn decode_for_target(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<Decoded, PipelineError> {
    if media == MediaType::Jpeg {
        check_type(bytes, media)?;
        let (cost, orientation) = inspect::read_header(bytes, media, limits)?;
        let stored = (cost.width, cost.height);
        let numerator = jpeg_scale(stored, limits);
        if let Some(scaled) = jpeg::decode_rgb_scaled(bytes, numerator, cost.convert_bytes)? {
            return Ok(Decoded {
                pixels: scaled.pixels,
                pixel_type: PixelType::U8x3,
                size: (scaled.width, scaled.height),
                stored,
                orientation,
            });
        }
    }
    if media == MediaType::Heic {
        check_type(bytes, media)?;
        let image = crate::heic::decode(bytes, limits)?;
        let size = (image.width, image.height);
        return Ok(Decoded {
            pixels: image.pixels,
            pixel_type: PixelType::U8x3,
            size,
            stored: size,
            orientation: Orientation::NoTransforms,
        });
    }
    let (image, orientation) = decode(bytes, media, limits)?;
    let stored = (image.width(), image.height());
    let (pixels, pixel_type) = opaque_or_rgba(image);
    Ok(Decoded {
        pixels,
        pixel_type,
        size: stored,
        stored,
        orientation,
    })
}

/// The header checks, then the whole image decoded, with its EXIF orientation (not applied).
/// A PDF is refused with [`PipelineError::UnsupportedMediaType`].
pub fn decode(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<(DynamicImage, Orientation), PipelineError> {
    check_type(bytes, media)?;
    match media {
        MediaType::Pdf => Err(PipelineError::UnsupportedMediaType),
        MediaType::Tiff => crate::tiff_pdf::first_page_rgb(bytes, limits),
        MediaType::Gif => {
            let frame = crate::gif_frame::first_frame(bytes, limits)?;
            let rgba = RgbaImage::from_raw(frame.width, frame.height, frame.rgba())
                .ok_or_else(|| PipelineError::Corrupt("GIF decoded short".to_owned()))?;
            Ok((DynamicImage::ImageRgba8(rgba), Orientation::NoTransforms))
        }
        MediaType::Heic => {
            let image = crate::heic::decode(bytes, limits)?;
            let rgb = RgbImage::from_raw(image.width, image.height, image.pixels)
                .ok_or_else(|| PipelineError::Corrupt("HEIF decoded short".to_owned()))?;
            Ok((DynamicImage::ImageRgb8(rgb), Orientation::NoTransforms))
        }
        _ => inspect::decode(bytes, media, limits),
    }
}

/// 8-bit RGB if every pixel is opaque, else 8-bit RGBA.
pub fn opaque_or_rgba(image: DynamicImage) -> (Vec<u8>, PixelType) {
    if !image.color().has_alpha() {
        return (image.into_rgb8().into_raw(), PixelType::U8x3);
    }
    let rgba = image.into_rgba8();
    if rgba.pixels().all(|p| p.0[3] == u8::MAX) {
        let rgb = DynamicImage::ImageRgba8(rgba).into_rgb8();
        (rgb.into_raw(), PixelType::U8x3)
    } else {
        (rgba.into_raw(), PixelType::U8x4)
    }
}

/// The output size for an image of `stored` size: long edge at most `limits.max_edge` (and
/// what WebP can hold), aspect kept, never larger than the input.
pub fn target_size(stored: (u32, u32), limits: &Limits) -> (u32, u32) {
    fit(stored.0, stored.1, limits.max_edge.clamp(1, WEBP_MAX_EDGE))
}

/// The scale M/8 at which a JPEG of `stored` size is decoded for its conversion: the smallest
/// that still covers [`target_size`]. (Its memory estimate uses the same.)
pub fn jpeg_scale(stored: (u32, u32), limits: &Limits) -> u8 {
    jpeg::scale_for(stored, target_size(stored, limits))
}

/// The size with the long edge at most `max_edge`, aspect kept, never larger than the input.
fn fit(width: u32, height: u32, max_edge: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_edge {
        return (width, height);
    }
    let scale = f64::from(max_edge) / f64::from(long);
    let scaled = |side: u32| ((f64::from(side) * scale).round() as u32).clamp(1, max_edge);
    if width >= height {
        (max_edge, scaled(height))
    } else {
        (scaled(width), max_edge)
    }
}

/// Applies an EXIF orientation to raw 8-bit RGB or RGBA pixels; the new pixels and size.
pub fn orient(
    pixels: Vec<u8>,
    pixel_type: PixelType,
    (width, height): (u32, u32),
    orientation: Orientation,
) -> Result<(Vec<u8>, (u32, u32)), PipelineError> {
    if orientation == Orientation::NoTransforms {
        return Ok((pixels, (width, height)));
    }
    let size_error = || PipelineError::Corrupt("pixel buffer does not match its size".to_owned());
    let mut image = if pixel_type == PixelType::U8x3 {
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, pixels).ok_or_else(size_error)?)
    } else {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(width, height, pixels).ok_or_else(size_error)?)
    };
    image.apply_orientation(orientation);
    let size = (image.width(), image.height());
    let pixels = if pixel_type == PixelType::U8x3 {
        image.into_rgb8().into_raw()
    } else {
        image.into_rgba8().into_raw()
    };
    Ok((pixels, size))
}

/// Lanczos3 resize of raw pixels from `from` to `to` (nothing done if they are equal).
pub fn resize(
    pixels: Vec<u8>,
    pixel_type: PixelType,
    from: (u32, u32),
    to: (u32, u32),
) -> Result<Vec<u8>, PipelineError> {
    if from == to {
        return Ok(pixels);
    }
    let source = Image::from_vec_u8(from.0, from.1, pixels, pixel_type)
        .map_err(|err| PipelineError::Corrupt(err.to_string()))?;
    let mut target = Image::new(to.0, to.1, pixel_type);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|err| PipelineError::Corrupt(err.to_string()))?;
    Ok(target.into_vec())
}

/// Lossy WebP of raw 8-bit RGB or RGBA pixels with `config`. The encoder writes only the
/// image: no EXIF, XMP or ICC chunks.
pub fn encode(
    pixels: &[u8],
    pixel_type: PixelType,
    (width, height): (u32, u32),
    config: &webp::WebPConfig,
) -> Result<Vec<u8>, PipelineError> {
    let encoder = if pixel_type == PixelType::U8x3 {
        webp::Encoder::from_rgb(pixels, width, height)
    } else {
        webp::Encoder::from_rgba(pixels, width, height)
    };
    let encoded = encoder
        .encode_advanced(config)
        .map_err(|err| PipelineError::Corrupt(format!("WebP encoding failed: {err:?}")))?;
    Ok(encoded.to_vec())
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn the_long_edge_is_capped_and_small_images_keep_their_size() {
        assert_eq!(fit(3000, 1000, 2048), (2048, 683));
        assert_eq!(fit(1000, 3000, 2048), (683, 2048));
        assert_eq!(fit(300, 200, 2048), (300, 200));
        assert_eq!(fit(100_000, 1, 2048), (2048, 1));
    }
}
