//! Output quality against a common reference: SSIM on luma and PSNR on RGB.
//!
//! The reference for an output of `w`x`h` is the original decoded with the `image` crate, EXIF
//! orientation applied (unless asked otherwise), and resized to exactly `w`x`h` with Lanczos3
//! in 32-bit float (fast_image_resize), rounded back to 8 bits.

use anyhow::Context;
use fast_image_resize::images::TypedImage;
use fast_image_resize::pixels::F32x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::Cursor;

/// The original image, decoded once, upright (`oriented`) or as stored.
#[derive(Debug, Clone)]
pub struct Original {
    upright: RgbImage,
    stored: RgbImage,
}

impl Original {
    /// Decodes `bytes` (any format the `image` crate reads) and keeps it upright and as stored.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut decoder = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()?
            .into_decoder()?;
        let orientation = decoder.orientation()?;
        let stored = DynamicImage::from_decoder(decoder)?;
        let mut upright = stored.clone();
        upright.apply_orientation(orientation);
        Ok(Self {
            upright: upright.into_rgb8(),
            stored: stored.into_rgb8(),
        })
    }

    /// Width and height as stored (before EXIF orientation).
    pub fn stored_size(&self) -> (u32, u32) {
        self.stored.dimensions()
    }

    /// The reference at `width`x`height`, upright or (for tools that ignore EXIF) as stored.
    pub fn reference(&self, width: u32, height: u32, upright: bool) -> anyhow::Result<RgbImage> {
        let source = if upright { &self.upright } else { &self.stored };
        resize_exact(source, width, height)
    }
}

/// Lanczos3 resize in 32-bit float, rounded to 8 bits.
pub fn resize_exact(source: &RgbImage, width: u32, height: u32) -> anyhow::Result<RgbImage> {
    if source.dimensions() == (width, height) {
        return Ok(source.clone());
    }
    let pixels: Vec<F32x3> = source
        .pixels()
        .map(|p| F32x3::new(p.0.map(f32::from)))
        .collect();
    let from = TypedImage::from_pixels(source.width(), source.height(), pixels)
        .context("source buffer size")?;
    let mut to = TypedImage::<F32x3>::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new().resize_typed(&from, &mut to, &options)?;
    let raw = to
        .pixels()
        .iter()
        .flat_map(|p| p.0.map(|c| c.round().clamp(0.0, 255.0) as u8))
        .collect();
    RgbImage::from_raw(width, height, raw).context("resized buffer size")
}

/// Mean SSIM of the luma of two same-sized RGB images (see [`imaging_fixtures::quality::ssim`]).
pub fn ssim(a: &RgbImage, b: &RgbImage) -> anyhow::Result<f64> {
    anyhow::ensure!(
        a.dimensions() == b.dimensions(),
        "SSIM of {:?} against {:?}",
        a.dimensions(),
        b.dimensions()
    );
    anyhow::ensure!(
        a.width() >= 11 && a.height() >= 11,
        "SSIM needs at least 11x11"
    );
    Ok(imaging_fixtures::quality::ssim(a, b))
}

/// PSNR in dB over all RGB samples (infinite for identical images).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> anyhow::Result<f64> {
    anyhow::ensure!(
        a.dimensions() == b.dimensions(),
        "PSNR of {:?} against {:?}",
        a.dimensions(),
        b.dimensions()
    );
    let squared: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum();
    let mse = squared / a.as_raw().len() as f64;
    Ok(10.0 * (255.0f64 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    #[test]
    fn an_image_against_itself_has_ssim_one_and_infinite_psnr() {
        let image = pattern(40, 30);
        assert!((ssim(&image, &image).unwrap() - 1.0).abs() < 1e-9);
        assert!(psnr(&image, &image).unwrap().is_infinite());
    }

    #[test]
    fn psnr_of_a_uniform_error_of_ten_is_28_13_db() {
        let a = RgbImage::from_pixel(20, 20, image::Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(20, 20, image::Rgb([110, 90, 110]));
        // 10 log10(255² / 10²) = 28.1308...
        assert!((psnr(&a, &b).unwrap() - 28.1308).abs() < 1e-3);
    }

    #[test]
    fn ssim_drops_with_noise_and_ignores_nothing_else() {
        let image = pattern(64, 64);
        let mut noisy = image.clone();
        for (i, p) in noisy.pixels_mut().enumerate() {
            let delta: i16 = if i % 2 == 0 { 25 } else { -25 };
            p.0 = p.0.map(|c| (i16::from(c) + delta).clamp(0, 255) as u8);
        }
        let score = ssim(&image, &noisy).unwrap();
        assert!(score < 0.9 && score > 0.0, "{score}");
        assert!(ssim(&image, &pattern(64, 32)).is_err());
    }

    #[test]
    fn the_reference_resize_keeps_a_flat_colour() {
        let flat = RgbImage::from_pixel(100, 50, image::Rgb([10, 200, 30]));
        let small = resize_exact(&flat, 40, 20).unwrap();
        assert_eq!(small.dimensions(), (40, 20));
        assert!(small.pixels().all(|p| p.0 == [10, 200, 30]));
    }
}
