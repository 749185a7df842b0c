//! WebP conversion of workspace receipts: size, orientation, transparency, metadata.

#![allow(clippy::unwrap_used)]

mod common;

use common::{jpeg, pdf, png, red_blue_jpeg, rgba_png, with_orientation};
use image::{ColorType, ImageFormat};
use imaging_pipeline::{Limits, MediaType, PipelineError, to_webp};

fn decode(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory_with_format(bytes, ImageFormat::WebP).unwrap()
}

#[test]
fn a_wide_jpeg_becomes_a_2048_pixel_webp_that_decodes() {
    let out = to_webp(&jpeg(3000, 1000), MediaType::Jpeg, &Limits::default()).unwrap();
    assert_eq!(out.width, 2048);
    assert!((682..=684).contains(&out.height), "{}", out.height);
    let decoded = decode(&out.bytes);
    assert_eq!((decoded.width(), decoded.height()), (out.width, out.height));
}

#[test]
fn a_small_png_is_not_upscaled() {
    let out = to_webp(&png(300, 200), MediaType::Png, &Limits::default()).unwrap();
    assert_eq!((out.width, out.height), (300, 200));
    assert_eq!(
        (decode(&out.bytes).width(), decode(&out.bytes).height()),
        (300, 200)
    );
}

#[test]
fn an_exif_rotated_jpeg_comes_out_upright_without_exif() {
    // Stored sideways, left half red and right half blue. Orientation 6 means "rotate 90°
    // clockwise to view", so upright the red half is on top and the blue half at the bottom.
    let bytes = with_orientation(&red_blue_jpeg(400, 200), 6);
    let out = to_webp(&bytes, MediaType::Jpeg, &Limits::default()).unwrap();
    assert_eq!((out.width, out.height), (200, 400));
    let upright = decode(&out.bytes).to_rgb8();
    assert_eq!(upright.dimensions(), (200, 400));
    let top = upright.get_pixel(100, 50).0;
    let bottom = upright.get_pixel(100, 350).0;
    assert!(top[0] > 150 && top[2] < 100, "top is red: {top:?}");
    assert!(
        bottom[2] > 150 && bottom[0] < 100,
        "bottom is blue: {bottom:?}"
    );
    assert!(
        !out.bytes.windows(4).any(|w| w == b"EXIF" || w == b"Exif"),
        "no EXIF chunk"
    );
    assert!(
        !out.bytes.windows(4).any(|w| w == b"XMP " || w == b"ICCP"),
        "no metadata chunks"
    );
}

#[test]
fn transparency_is_kept_only_when_there_is_some() {
    let limits = Limits::default();
    let see_through = to_webp(&rgba_png(40, 30, 128), MediaType::Png, &limits).unwrap();
    assert_eq!(decode(&see_through.bytes).color(), ColorType::Rgba8);
    let opaque = to_webp(&rgba_png(40, 30, 255), MediaType::Png, &limits).unwrap();
    assert_eq!(decode(&opaque.bytes).color(), ColorType::Rgb8);
}

#[test]
fn a_webp_is_converted_again_and_a_pdf_is_refused() {
    let limits = Limits {
        max_edge: 100,
        ..Limits::default()
    };
    let first = to_webp(&jpeg(400, 300), MediaType::Jpeg, &Limits::default()).unwrap();
    let again = to_webp(&first.bytes, MediaType::Webp, &limits).unwrap();
    assert_eq!((again.width, again.height), (100, 75));
    let result = to_webp(&pdf(1, 100), MediaType::Pdf, &limits);
    assert!(
        matches!(result, Err(PipelineError::UnsupportedMediaType)),
        "{result:?}"
    );
}

/// Today's conversion before DCT scaling, from the same stages: the whole JPEG decoded, Lanczos3
/// to the target, oriented; the pixels before encoding and the WebP.
fn full_decode_conversion(bytes: &[u8], limits: &Limits) -> (image::RgbImage, Vec<u8>) {
    use imaging_pipeline::webp_stages::{
        decode, encode, lossy_config, opaque_or_rgba, orient, resize, target_size,
    };
    let (image, orientation) = decode(bytes, MediaType::Jpeg, limits).unwrap();
    let stored = (image.width(), image.height());
    let (pixels, pixel_type) = opaque_or_rgba(image);
    let target = target_size(stored, limits);
    let pixels = resize(pixels, pixel_type, stored, target).unwrap();
    let (pixels, size) = orient(pixels, pixel_type, target, orientation).unwrap();
    let webp = encode(
        &pixels,
        pixel_type,
        size,
        &lossy_config(limits.webp_quality).unwrap(),
    );
    let upright = image::RgbImage::from_raw(size.0, size.1, pixels).unwrap();
    (upright, webp.unwrap())
}

#[test]
fn a_12_mp_photo_decoded_at_5_8_scale_keeps_size_orientation_bytes_and_quality() {
    let limits = Limits::default();
    let photo = imaging_fixtures::scenes::photo(4032, 3024, 7);
    let stored = common::jpeg_of(&photo);
    // The scale libjpeg is asked for: 5/8 gives 2520x1890, the smallest at least 2048x1536.
    let decoded =
        imaging_pipeline::webp_stages::decode_for_target(&stored, MediaType::Jpeg, &limits)
            .unwrap();
    assert_eq!(decoded.size, (2520, 1890));
    assert_eq!(decoded.stored, (4032, 3024));
    assert_eq!(planes_of(&stored, &limits), 3);

    for (orientation, expected) in [(1, (2048, 1536)), (6, (1536, 2048)), (3, (2048, 1536))] {
        let file = with_orientation(&stored, orientation);
        let scaled = to_webp(&file, MediaType::Jpeg, &limits).unwrap();
        assert_eq!(
            (scaled.width, scaled.height),
            expected,
            "orientation {orientation}"
        );
        let (reference, full_webp) = full_decode_conversion(&file, &limits);
        let full = decode(&full_webp).into_rgb8();
        let ours = decode(&scaled.bytes).into_rgb8();
        assert_eq!(ours.dimensions(), expected);
        // Quality against the full-resolution Lanczos3 reference: within 0.002 of the
        // full-decode conversion's; size within 1%.
        let ssim_full = imaging_fixtures::quality::ssim(&full, &reference);
        let ssim_scaled = imaging_fixtures::quality::ssim(&ours, &reference);
        assert!(
            ssim_scaled >= ssim_full - 0.002,
            "orientation {orientation}: SSIM {ssim_scaled:.4} vs {ssim_full:.4} decoding whole"
        );
        let ratio = scaled.bytes.len() as f64 / full_webp.len() as f64;
        assert!(
            (0.99..=1.01).contains(&ratio),
            "orientation {orientation}: {} bytes vs {} decoding whole",
            scaled.bytes.len(),
            full_webp.len()
        );
        // Upright: the top-left corner of the reference is the top-left corner of ours.
        let corner = |image: &image::RgbImage| image.get_pixel(40, 40).0;
        let (a, b) = (corner(&ours), corner(&reference));
        assert!(
            a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 24),
            "orientation {orientation}: corner {a:?} vs {b:?}"
        );
    }
}

#[test]
fn small_grey_and_progressive_jpegs_convert_through_the_scaled_decoder() {
    let limits = Limits::default();
    // Below the target: decoded at full size, nothing resized.
    let out = to_webp(&jpeg(640, 480), MediaType::Jpeg, &limits).unwrap();
    assert_eq!((out.width, out.height), (640, 480));
    // Greyscale: libjpeg expands it to RGB.
    let grey = image::GrayImage::from_fn(3000, 2000, |x, y| image::Luma([((x ^ y) % 251) as u8]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(grey)
        .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Jpeg)
        .unwrap();
    let out = to_webp(&bytes, MediaType::Jpeg, &limits).unwrap();
    assert_eq!((out.width, out.height), (2048, 1365));
    let back = decode(&out.bytes);
    assert_eq!((back.width(), back.height()), (2048, 1365));
    // Progressive (10 scans, written by libvips): checked and converted by libjpeg too.
    let progressive = imaging_fixtures::PROGRESSIVE_JPEG;
    let seen = imaging_pipeline::inspect(progressive, MediaType::Jpeg, &limits).unwrap();
    assert_eq!((seen.width, seen.height), (403, 302));
    let out = to_webp(progressive, MediaType::Jpeg, &limits).unwrap();
    assert_eq!((out.width, out.height), (403, 302));
    let cut = &progressive[..progressive.len() * 2 / 3];
    let mut resealed = cut.to_vec();
    resealed.extend_from_slice(&[0xFF, 0xD9]);
    assert!(imaging_pipeline::inspect(&resealed, MediaType::Jpeg, &limits).is_err());
}

/// How many planes the YCbCr path decodes `file` to (0: it takes the RGB path).
fn planes_of(file: &[u8], limits: &Limits) -> usize {
    use imaging_pipeline::webp_stages::{jpeg_header, jpeg_scale, yuv_decode};
    let header = jpeg_header(file, limits).unwrap();
    let planes = yuv_decode(file, jpeg_scale(header.stored, limits), header.decode_bytes).unwrap();
    planes.map_or(0, |planes| planes.len())
}

/// The mean of each channel over the image.
fn mean_rgb(image: &image::RgbImage) -> [f64; 3] {
    let mut sum = [0f64; 3];
    for pixel in image.pixels() {
        for (total, value) in sum.iter_mut().zip(pixel.0) {
            *total += f64::from(value);
        }
    }
    let count = f64::from(image.width() * image.height());
    sum.map(|total| total / count)
}

#[test]
fn jpegs_of_every_chroma_sampling_keep_their_colours_through_the_ycbcr_path() {
    // A long edge of 256 px: decoded at 4/8 or 3/8, so the planes come from the scaled decoder
    // (chroma scaled up in the inverse DCT), then resized each on its own.
    let limits = Limits {
        max_edge: 256,
        ..Limits::default()
    };
    for (sampling, file) in imaging_fixtures::SAMPLING_JPEGS {
        // The planes libjpeg gives at the conversion's scale: the YCbCr path is taken.
        assert_eq!(planes_of(file, &limits), 3, "{sampling}");
        let out = to_webp(file, MediaType::Jpeg, &limits).unwrap();
        let (reference, rgb_webp) = full_decode_conversion(file, &limits);
        assert_eq!(
            (out.width, out.height),
            reference.dimensions(),
            "{sampling}"
        );
        let ours = decode(&out.bytes).into_rgb8();
        let through_rgb = decode(&rgb_webp).into_rgb8();
        // As close to the reference as the RGB path's output, and in the same colours: a chroma
        // plane swapped, misplaced or left in full range would move the means by tens.
        let ssim_ours = imaging_fixtures::quality::ssim(&ours, &reference);
        let ssim_rgb = imaging_fixtures::quality::ssim(&through_rgb, &reference);
        assert!(
            ssim_ours >= ssim_rgb - 0.01,
            "{sampling}: SSIM {ssim_ours:.4} vs {ssim_rgb:.4} through RGB"
        );
        let (ours_mean, reference_mean) = (mean_rgb(&ours), mean_rgb(&reference));
        for channel in 0..3 {
            let off = (ours_mean[channel] - reference_mean[channel]).abs();
            assert!(
                off < 2.0,
                "{sampling}: channel {channel} mean {:.1} vs {:.1}",
                ours_mean[channel],
                reference_mean[channel]
            );
        }
        // A saturated patch keeps its colour: the red one's centre (first patch, top left).
        let (w, h) = reference.dimensions();
        let at = (w / 10 + w / 14, h / 8 + h / 8);
        let (a, b) = (
            ours.get_pixel(at.0, at.1).0,
            reference.get_pixel(at.0, at.1).0,
        );
        assert!(
            a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 16),
            "{sampling}: red patch {a:?} vs {b:?}"
        );
        assert!(
            b[0] > 200 && b[1] < 60 && b[2] < 60,
            "{sampling}: reference {b:?}"
        );
    }
}

#[test]
fn a_grey_jpeg_stays_grey_and_keeps_its_levels() {
    let limits = Limits::default();
    let grey = image::GrayImage::from_fn(3000, 2000, |x, _| image::Luma([(x * 255 / 2999) as u8]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(grey)
        .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Jpeg)
        .unwrap();
    assert_eq!(planes_of(&bytes, &limits), 1);
    let out = to_webp(&bytes, MediaType::Jpeg, &limits).unwrap();
    let back = decode(&out.bytes).into_rgb8();
    assert_eq!(back.dimensions(), (2048, 1365));
    for x in [10, 512, 1024, 1536, 2040] {
        let pixel = back.get_pixel(x, 600).0;
        let expected = f64::from(x) * 255.0 / 2047.0;
        assert!(
            pixel.iter().all(|&c| (f64::from(c) - expected).abs() < 6.0),
            "x {x}: {pixel:?}, expected about {expected:.0}"
        );
        let spread = pixel.iter().max().unwrap() - pixel.iter().min().unwrap();
        assert!(spread <= 3, "x {x}: {pixel:?} is not grey");
    }
}
