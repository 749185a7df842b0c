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
