//! The WebP conversion split into timed stages (decode, orient, resize, encode), built from
//! `imaging_pipeline::webp_stages`: the same functions `imaging_pipeline::to_webp` chains.
//!
//! [`Variant::Before`] is the conversion as it was first (orient the full-size image, then
//! resize, then encode with libwebp's default effort, method 4); [`Variant::FullDecode`] is the
//! next version (resize in stored orientation, orient the small image, method 2) which still
//! decoded every JPEG whole; [`Variant::Current`] is the pipeline now, which decodes large JPEGs
//! at a reduced scale (libjpeg-turbo's DCT scaling). The decode stage includes the header checks
//! (type sniffing, pixel cap, JPEG completeness).

use fast_image_resize::PixelType;
use imaging_pipeline::webp_stages::{
    decode, decode_for_target, encode, jpeg_header, jpeg_scale, lossy_config, opaque_or_rgba,
    orient, resize, target_size, yuv_decode, yuv_encode, yuv_fit,
};
use imaging_pipeline::{Limits, MediaType};
use std::time::{Duration, Instant};

/// libwebp's default effort (`WebPConfigInit`), which the pipeline used before.
pub const LIBWEBP_DEFAULT_METHOD: i32 = 4;

/// Which conversion to replicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Orient at full size, then resize, then encode at libwebp's default effort.
    Before,
    /// Full decode, resize in stored orientation, orient the small image, method 2.
    FullDecode,
    /// As `FullDecode`, but large JPEGs decoded at M/8 scale, to RGB.
    ScaledRgb,
    /// The pipeline now: a JPEG's YCbCr planes at M/8 scale, resized, encoded as YUV.
    Current,
}

impl Variant {
    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Before => "ours, first: orient full size, resize, method 4",
            Variant::FullDecode => "ours, before: full decode, resize, orient small, method 2",
            Variant::ScaledRgb => {
                "ours, before: DCT-scaled decode to RGB, resize, orient, method 2"
            }
            Variant::Current => "ours, now: DCT-scaled YCbCr planes, resize, orient, encode YUV",
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

/// Converts like `to_webp` (variant `variant`), timing each stage.
pub fn convert(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
    variant: Variant,
) -> anyhow::Result<(Converted, StageTimes)> {
    let mut times = StageTimes::default();
    let mut config = lossy_config(limits.webp_quality)?;
    if variant == Variant::Before {
        config.method = LIBWEBP_DEFAULT_METHOD;
    }

    if variant == Variant::Current && media == MediaType::Jpeg {
        let start = Instant::now();
        let header = jpeg_header(bytes, limits)?;
        let numerator = jpeg_scale(header.stored, limits);
        let planes = yuv_decode(bytes, numerator, header.decode_bytes)?
            .ok_or_else(|| anyhow::anyhow!("not a YCbCr or grey JPEG"))?;
        times.decode = start.elapsed();
        let start = Instant::now();
        let to = target_size(header.stored, limits);
        let image = yuv_fit(&planes, to, header.orientation)?;
        drop(planes);
        times.resize = start.elapsed();
        let start = Instant::now();
        let bytes = yuv_encode(&image, &config)?;
        times.encode = start.elapsed();
        return Ok((
            Converted {
                bytes,
                width: image.width,
                height: image.height,
            },
            times,
        ));
    }

    if matches!(variant, Variant::ScaledRgb | Variant::Current) {
        let start = Instant::now();
        let decoded = decode_for_target(bytes, media, limits)?;
        times.decode = start.elapsed();
        let start = Instant::now();
        let to = target_size(decoded.stored, limits);
        let pixels = resize(decoded.pixels, decoded.pixel_type, decoded.size, to)?;
        times.resize = start.elapsed();
        let start = Instant::now();
        let (pixels, size) = orient(pixels, decoded.pixel_type, to, decoded.orientation)?;
        times.orient = start.elapsed();
        let start = Instant::now();
        let bytes = encode(&pixels, decoded.pixel_type, size, &config)?;
        times.encode = start.elapsed();
        return Ok((
            Converted {
                bytes,
                width: size.0,
                height: size.1,
            },
            times,
        ));
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
            let to = target_size(size, limits);
            let pixels = resize(pixels, pixel_type, size, to)?;
            times.resize = start.elapsed();
            (pixels, pixel_type, to)
        }
        Variant::FullDecode | Variant::ScaledRgb | Variant::Current => {
            let start = Instant::now();
            let stored = (image.width(), image.height());
            let (pixels, pixel_type) = opaque_or_rgba(image);
            let alpha_scan = start.elapsed();

            let start = Instant::now();
            let to = target_size(stored, limits);
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
    Ok(encode(pixels, PixelType::U8x3, size, config)?)
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
    let to = target_size(stored, limits);
    let pixels = resize(pixels, PixelType::U8x3, stored, to)?;
    Ok(orient(pixels, PixelType::U8x3, to, orientation)?)
}
