//! A bench-local replica of the WebP conversion, split into timed stages (decode, orient,
//! resize, encode), with the same crates and settings as `imaging_pipeline::to_webp`.
//!
//! [`Variant::Before`] is the conversion as it was before the pipeline was optimised (orient the
//! full-size image, then resize, then encode with libwebp's defaults, method 4);
//! [`Variant::Current`] mirrors the pipeline as it is now. Header checks (type sniffing, pixel cap, JPEG completeness)
//! are left out here; they cost well under a millisecond plus one scan of the input bytes.

use anyhow::Context;
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, RgbaImage};
use imaging_pipeline::{Limits, MediaType};
use std::io::Cursor;
use std::time::{Duration, Instant};

/// Which conversion to replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Orient at full size, then resize, then `encode_simple` (libwebp defaults).
    Before,
    /// The pipeline now: resize in stored orientation, orient the small image, encode.
    Current,
}

impl Variant {
    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Before => "ours, before: orient full size, resize, method 4",
            Variant::Current => "ours, now: resize, orient small, method 2",
        }
    }
}

/// Time spent in each stage of one conversion.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Header parse and full decode to 8-bit pixels.
    pub decode: Duration,
    /// EXIF orientation applied (and, for images with alpha, the opacity scan).
    pub orient: Duration,
    /// Lanczos3 downscale.
    pub resize: Duration,
    /// Lossy WebP encode (RGB import, conversion to YUV, VP8 encode).
    pub encode: Duration,
}

impl StageTimes {
    /// All stages together.
    pub fn total(&self) -> Duration {
        self.decode + self.orient + self.resize + self.encode
    }
}

/// A converted image from the replica.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The WebP file.
    pub bytes: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

fn format(media: MediaType) -> anyhow::Result<ImageFormat> {
    Ok(match media {
        MediaType::Jpeg => ImageFormat::Jpeg,
        MediaType::Png => ImageFormat::Png,
        MediaType::Webp => ImageFormat::WebP,
        MediaType::Pdf => anyhow::bail!("a PDF is not converted to WebP"),
    })
}

/// Decodes as the pipeline does: format given, allocation cap, EXIF orientation from the header.
fn decode(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> anyhow::Result<(DynamicImage, Orientation)> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format(media)?);
    let mut decode_limits = image::Limits::default();
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(decode_limits);
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok((DynamicImage::from_decoder(decoder)?, orientation))
}

/// 8-bit RGB if every pixel is opaque, else 8-bit RGBA (as the pipeline decides).
fn opaque_or_rgba(image: DynamicImage) -> (Vec<u8>, PixelType) {
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

/// The long edge brought down to `max_edge`, aspect kept, never up (the pipeline's rule).
pub fn fit(width: u32, height: u32, max_edge: u32) -> (u32, u32) {
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

fn resize(
    pixels: Vec<u8>,
    pixel_type: PixelType,
    from: (u32, u32),
    to: (u32, u32),
) -> anyhow::Result<Vec<u8>> {
    if from == to {
        return Ok(pixels);
    }
    let source = Image::from_vec_u8(from.0, from.1, pixels, pixel_type)?;
    let mut target = Image::new(to.0, to.1, pixel_type);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new().resize(&source, &mut target, &options)?;
    Ok(target.into_vec())
}

fn encode(
    pixels: &[u8],
    pixel_type: PixelType,
    (width, height): (u32, u32),
    config: &webp::WebPConfig,
) -> anyhow::Result<Vec<u8>> {
    let encoder = if pixel_type == PixelType::U8x3 {
        webp::Encoder::from_rgb(pixels, width, height)
    } else {
        webp::Encoder::from_rgba(pixels, width, height)
    };
    let encoded = encoder
        .encode_advanced(config)
        .map_err(|err| anyhow::anyhow!("WebP encoding failed: {err:?}"))?;
    Ok(encoded.to_vec())
}

/// libwebp's default lossy configuration at `quality` (what `Encoder::encode_simple` uses).
pub fn default_config(quality: f32) -> anyhow::Result<webp::WebPConfig> {
    let mut config =
        webp::WebPConfig::new().map_err(|()| anyhow::anyhow!("libwebp config init failed"))?;
    config.lossless = 0;
    config.alpha_compression = 1;
    config.quality = quality.clamp(0.0, 100.0);
    Ok(config)
}

/// Applies an orientation to raw pixels of `pixel_type`, returning the new pixels and size.
fn orient(
    pixels: Vec<u8>,
    pixel_type: PixelType,
    (width, height): (u32, u32),
    orientation: Orientation,
) -> anyhow::Result<(Vec<u8>, (u32, u32))> {
    if orientation == Orientation::NoTransforms {
        return Ok((pixels, (width, height)));
    }
    let mut image = if pixel_type == PixelType::U8x3 {
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, pixels).context("RGB size")?)
    } else {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(width, height, pixels).context("RGBA size")?)
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

/// Converts like `to_webp` (variant `variant`), timing each stage.
pub fn convert(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
    variant: Variant,
) -> anyhow::Result<(Converted, StageTimes)> {
    let mut times = StageTimes::default();
    let max_edge = limits.max_edge.clamp(1, 16_383);
    let mut config = default_config(limits.webp_quality)?;
    if variant == Variant::Current {
        config.method = imaging_pipeline::WEBP_METHOD;
    }

    let start = Instant::now();
    let (image, orientation) = decode(bytes, media, limits)?;
    times.decode = start.elapsed();

    let (pixels, pixel_type, size) = match variant {
        Variant::Before => {
            let start = Instant::now();
            let mut image = image;
            image.apply_orientation(orientation);
            let size = (image.width(), image.height());
            let (pixels, pixel_type) = opaque_or_rgba(image);
            times.orient = start.elapsed();

            let start = Instant::now();
            let to = fit(size.0, size.1, max_edge);
            let pixels = resize(pixels, pixel_type, size, to)?;
            times.resize = start.elapsed();
            (pixels, pixel_type, to)
        }
        Variant::Current => {
            let start = Instant::now();
            let stored = (image.width(), image.height());
            let (pixels, pixel_type) = opaque_or_rgba(image);
            let alpha_scan = start.elapsed();

            let start = Instant::now();
            let to = fit(stored.0, stored.1, max_edge);
            let pixels = resize(pixels, pixel_type, stored, to)?;
            times.resize = start.elapsed();

            let start = Instant::now();
            let (pixels, size) = orient(pixels, pixel_type, to, orientation)?;
            times.orient = alpha_scan + start.elapsed();
            (pixels, pixel_type, size)
        }
    };

    let start = Instant::now();
    let bytes = encode(&pixels, pixel_type, size, &config)?;
    times.encode = start.elapsed();
    Ok((
        Converted {
            bytes,
            width: size.0,
            height: size.1,
        },
        times,
    ))
}

/// Encodes already-resized RGB pixels with `config` (for comparing encoder settings).
pub fn encode_rgb(
    pixels: &[u8],
    size: (u32, u32),
    config: &webp::WebPConfig,
) -> anyhow::Result<Vec<u8>> {
    encode(pixels, PixelType::U8x3, size, config)
}

/// The upright, resized RGB pixels that the encoder sees for this input (current variant).
pub fn encoder_input(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> anyhow::Result<(Vec<u8>, (u32, u32))> {
    let (image, orientation) = decode(bytes, media, limits)?;
    let stored = (image.width(), image.height());
    let pixels = image.into_rgb8().into_raw();
    let to = fit(stored.0, stored.1, limits.max_edge.clamp(1, 16_383));
    let pixels = resize(pixels, PixelType::U8x3, stored, to)?;
    orient(pixels, PixelType::U8x3, to, orientation)
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fit_caps_the_long_edge_and_never_upscales() {
        assert_eq!(fit(4032, 3024, 2048), (2048, 1536));
        assert_eq!(fit(3024, 4032, 2048), (1536, 2048));
        assert_eq!(fit(300, 200, 2048), (300, 200));
    }
}
