//! A JPEG converted to WebP without leaving YCbCr: libjpeg-turbo's raw planes at the DCT scale
//! (no upsampling, no colour conversion), each plane resized on its own (luma to the output
//! size with Lanczos3, chroma to half of it, as WebP's 4:2:0 wants, with a softer filter), mapped from JPEG's full range to
//! WebP's video range, turned upright, and handed to libwebp as a YUV picture. The RGB path
//! converts to RGB in the decoder and back to YUV in the encoder, and resizes three full-size
//! channels instead of one and two quarter-size ones.
//!
//! One of the two modules of the workspace allowed `unsafe` (with `jpeg`): the calls into
//! libwebp, each saying why it is sound.
#![allow(unsafe_code)]

use crate::jpeg::{self, Plane};
use crate::{Limits, PipelineError};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use libwebp_sys as ffi;

/// An image in WebP's 4:2:0 YUV (video range): luma `width` x `height`, each chroma plane
/// half of that (rounded up).
#[derive(Debug)]
pub struct Yuv420 {
    /// Luma, row after row.
    pub y: Vec<u8>,
    /// Cb.
    pub u: Vec<u8>,
    /// Cr.
    pub v: Vec<u8>,
    /// Luma width.
    pub width: u32,
    /// Luma height.
    pub height: u32,
}

/// A JPEG's planes decoded at `numerator/8` for a conversion (see [`jpeg::decode_planes_scaled`]);
/// `None` for colour spaces other than YCbCr and grey.
pub fn decode(
    bytes: &[u8],
    numerator: u8,
    max_bytes: u64,
) -> Result<Option<Vec<Plane>>, PipelineError> {
    jpeg::decode_planes_scaled(bytes, numerator, max_bytes)
}

/// `planes` (luma, then Cb and Cr if the image has colour) brought to `target` (the stored
/// orientation's size), into video range, then turned upright.
pub fn fit(
    planes: &[Plane],
    target: (u32, u32),
    orientation: Orientation,
) -> Result<Yuv420, PipelineError> {
    let (luma, chroma) = planes
        .split_first()
        .ok_or_else(|| PipelineError::Corrupt("JPEG has no components".to_owned()))?;
    let half = (target.0.div_ceil(2), target.1.div_ceil(2));
    let mut resizer = Resizer::new();
    let mut y = resize_plane(&mut resizer, luma, target, FilterType::Lanczos3)?;
    let lut_y = range_table(219, 16);
    y.iter_mut().for_each(|s| *s = lut_y[usize::from(*s)]);
    let (u, v) = match chroma {
        [cb, cr] => {
            let lut_c = chroma_table();
            let mut u = resize_plane(&mut resizer, cb, half, CHROMA_FILTER)?;
            let mut v = resize_plane(&mut resizer, cr, half, CHROMA_FILTER)?;
            u.iter_mut().for_each(|s| *s = lut_c[usize::from(*s)]);
            v.iter_mut().for_each(|s| *s = lut_c[usize::from(*s)]);
            (u, v)
        }
        [] => {
            let grey = vec![128; half.0 as usize * half.1 as usize];
            (grey.clone(), grey)
        }
        _ => return Err(PipelineError::Corrupt("JPEG has two components".to_owned())),
    };
    let (y, size) = orient(y, target, orientation)?;
    let (u, _) = orient(u, half, orientation)?;
    let (v, _) = orient(v, half, orientation)?;
    Ok(Yuv420 {
        y,
        u,
        v,
        width: size.0,
        height: size.1,
    })
}

/// The filter chroma is resized with. libwebp makes 4:2:0 chroma from RGB by averaging 2x2
/// blocks, a soft filter; a bilinear (tent) filter over the same reduction is as soft, and a
/// third of Lanczos3's taps.
const CHROMA_FILTER: FilterType = FilterType::Bilinear;

/// Resize of a plane's image area to `to` with `filter`.
fn resize_plane(
    resizer: &mut Resizer,
    plane: &Plane,
    to: (u32, u32),
    filter: FilterType,
) -> Result<Vec<u8>, PipelineError> {
    let corrupt = |err: &dyn std::fmt::Display| PipelineError::Corrupt(err.to_string());
    let stride = u32::try_from(plane.stride).map_err(|e| corrupt(&e))?;
    let rows = u32::try_from(plane.rows).map_err(|e| corrupt(&e))?;
    let source =
        ImageRef::new(stride, rows, &plane.samples, PixelType::U8).map_err(|e| corrupt(&e))?;
    let mut target = Image::new(to.0, to.1, PixelType::U8);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(filter))
        .crop(0.0, 0.0, f64::from(plane.width), f64::from(plane.height));
    resizer
        .resize(&source, &mut target, &options)
        .map_err(|e| corrupt(&e))?;
    Ok(target.into_vec())
}

/// Full range (0-255, JFIF) to video range: `offset + sample x span / 255`, rounded.
fn range_table(span: u32, offset: u32) -> [u8; 256] {
    let mut table = [0u8; 256];
    for (sample, out) in (0u32..).zip(table.iter_mut()) {
        *out = (offset + (sample * span + 127) / 255) as u8;
    }
    table
}

/// Chroma from full range to video range, about 128: `128 + (c - 128) x 224 / 255`, rounded.
fn chroma_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    for (sample, out) in (0i32..).zip(table.iter_mut()) {
        let scaled = (sample - 128) * 224;
        let rounded = if scaled >= 0 {
            (scaled + 127) / 255
        } else {
            (scaled - 127) / 255
        };
        *out = (128 + rounded) as u8;
    }
    table
}

/// A plane turned upright; its new size. Each sample is copied once, in tiles small enough for
/// the rows of both planes to stay in cache (a quarter turn reads rows and writes columns).
fn orient(
    samples: Vec<u8>,
    (width, height): (u32, u32),
    orientation: Orientation,
) -> Result<(Vec<u8>, (u32, u32)), PipelineError> {
    let (w, h) = (width as usize, height as usize);
    if samples.len() != w * h {
        return Err(PipelineError::Corrupt(
            "plane does not match its size".to_owned(),
        ));
    }
    // Where the sample at (x, y) goes: (x', y') = (ax x + bx y + cx, ay x + by y + cy).
    // The last column and row.
    let (r, b) = (signed(w) - 1, signed(h) - 1);
    let (turned, [ax, bx, cx, ay, by, cy]): (bool, [isize; 6]) = match orientation {
        Orientation::NoTransforms => return Ok((samples, (width, height))),
        Orientation::FlipHorizontal => (false, [-1, 0, r, 0, 1, 0]),
        Orientation::FlipVertical => (false, [1, 0, 0, 0, -1, b]),
        Orientation::Rotate180 => (false, [-1, 0, r, 0, -1, b]),
        // Clockwise: the left column becomes the top row.
        Orientation::Rotate90 => (true, [0, -1, b, 1, 0, 0]),
        Orientation::Rotate270 => (true, [0, 1, 0, -1, 0, r]),
        // Rotated clockwise, then mirrored: a transpose.
        Orientation::Rotate90FlipH => (true, [0, 1, 0, 1, 0, 0]),
        Orientation::Rotate270FlipH => (true, [0, -1, b, -1, 0, r]),
    };
    let out_width = if turned { h } else { w };
    let mut out = vec![0u8; samples.len()];
    const TILE: usize = 64;
    for y0 in (0..h).step_by(TILE) {
        for x0 in (0..w).step_by(TILE) {
            for y in y0..(y0 + TILE).min(h) {
                let end = (x0 + TILE).min(w);
                for (x, &sample) in (x0..end).zip(&samples[y * w + x0..y * w + end]) {
                    let (xs, ys) = (signed(x), signed(y));
                    let to_x = (ax * xs + bx * ys + cx) as usize;
                    let to_y = (ay * xs + by * ys + cy) as usize;
                    out[to_y * out_width + to_x] = sample;
                }
            }
        }
    }
    let size = if turned {
        (height, width)
    } else {
        (width, height)
    };
    Ok((out, size))
}

/// A plane's index as a signed number (planes are far smaller than `isize::MAX`).
fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// Lossy WebP of `image` with `config`: no EXIF, XMP or ICC chunks.
pub fn encode(image: &Yuv420, config: &ffi::WebPConfig) -> Result<Vec<u8>, PipelineError> {
    let failed = |what: &str| PipelineError::Corrupt(format!("WebP encoding failed: {what}"));
    let (width, height) = (image.width as usize, image.height as usize);
    let half = (width.div_ceil(2), height.div_ceil(2));
    if width == 0
        || height == 0
        || image.y.len() != width * height
        || image.u.len() != half.0 * half.1
        || image.v.len() != half.0 * half.1
    {
        return Err(failed("planes do not match the size"));
    }
    let as_int = |n: usize| i32::try_from(n).map_err(|_| failed("image too large"));
    // SAFETY: a zeroed picture is what `WebPPictureInit` expects to fill in; the writer is
    // libwebp's own memory writer, initialised before use and cleared after.
    let mut picture: ffi::WebPPicture = unsafe { std::mem::zeroed() };
    if !unsafe { ffi::WebPPictureInit(&mut picture) } {
        return Err(failed("picture set-up"));
    }
    let mut writer: ffi::WebPMemoryWriter = unsafe { std::mem::zeroed() };
    unsafe { ffi::WebPMemoryWriterInit(&mut writer) };
    picture.use_argb = 0;
    picture.colorspace = ffi::WebPEncCSP::WEBP_YUV420;
    picture.width = as_int(width)?;
    picture.height = as_int(height)?;
    // libwebp only reads the planes of a picture it did not allocate (`memory_` stays null, so
    // `WebPPictureFree` would free nothing of them).
    picture.y = image.y.as_ptr().cast_mut();
    picture.u = image.u.as_ptr().cast_mut();
    picture.v = image.v.as_ptr().cast_mut();
    picture.y_stride = as_int(width)?;
    picture.uv_stride = as_int(half.0)?;
    picture.writer = Some(ffi::WebPMemoryWrite);
    picture.custom_ptr = (&raw mut writer).cast();
    // SAFETY: the planes hold `width x height` and twice `half.0 x half.1` samples (checked
    // above) and outlive the call; `config` is a valid configuration; the writer lives until
    // it is cleared below.
    let ok = unsafe { ffi::WebPEncode(config, &mut picture) } != 0;
    let result = if ok && !writer.mem.is_null() {
        // SAFETY: the memory writer holds `size` bytes at `mem`.
        Ok(unsafe { std::slice::from_raw_parts(writer.mem, writer.size) }.to_vec())
    } else {
        Err(failed(&format!("{:?}", picture.error_code)))
    };
    // SAFETY: frees the writer's buffer (the picture owns no memory of its own).
    unsafe { ffi::WebPMemoryWriterClear(&mut writer) };
    result
}

/// Converts a JPEG of `stored` size whose header was read: its planes at `numerator/8`, fitted
/// to `target` and encoded. `None` for colour spaces other than YCbCr and grey.
pub(crate) fn jpeg_to_webp(
    bytes: &[u8],
    numerator: u8,
    max_bytes: u64,
    target: (u32, u32),
    orientation: Orientation,
    limits: &Limits,
) -> Result<Option<crate::WebpOutput>, PipelineError> {
    let Some(planes) = decode(bytes, numerator, max_bytes)? else {
        return Ok(None);
    };
    let image = fit(&planes, target, orientation)?;
    drop(planes);
    let config = crate::webp::lossy_config(limits.webp_quality)?;
    let bytes = encode(&image, &config)?;
    Ok(Some(crate::WebpOutput {
        bytes,
        width: image.width,
        height: image.height,
    }))
}

#[cfg(test)]
mod tests {
    use super::orient;
    use image::metadata::Orientation;

    #[test]
    fn planes_turn_as_the_image_crate_turns_pictures() {
        let (w, h) = (67u32, 45u32);
        let samples: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
        for exif in 1..=8 {
            let orientation = Orientation::from_exif(exif).unwrap();
            let mut expected = image::DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(w, h, samples.clone()).unwrap(),
            );
            expected.apply_orientation(orientation);
            let (ours, size) = orient(samples.clone(), (w, h), orientation).unwrap();
            assert_eq!(size, (expected.width(), expected.height()), "EXIF {exif}");
            assert_eq!(ours, expected.into_luma8().into_raw(), "EXIF {exif}");
        }
    }
}
