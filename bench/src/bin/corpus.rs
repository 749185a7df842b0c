//! Writes the conversion benchmark corpus, made entirely in code and deterministic (same bytes on
//! every run): three 12 MP phone-like JPEGs (one upright, one with EXIF orientation 6, one with
//! orientation 3), a 2560x1600 PNG screenshot, a 10-page PDF of scanned receipts (embedded JPEGs)
//! and 16x16 JPEG/PNG files used to measure command-line start-up cost.
//!
//! Usage: `corpus [DIR]` (default `target/bench-corpus`).

use anyhow::Context;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use imaging_bench::conversion::corpus::{CORPUS_FILES, CorpusFile};
use imaging_fixtures::scenes::{photo, screenshot};
use lopdf::{Document, Object, Stream, dictionary};
use std::path::{Path, PathBuf};

fn jpeg_bytes(image: &RgbImage, quality: u8) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

fn png_bytes(image: &RgbImage) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// `jpeg` with an EXIF orientation, as the shared fixtures make it.
fn with_orientation(jpeg: &[u8], orientation: u16) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(jpeg.len() >= 2, "JPEG too short");
    Ok(imaging_e2e::fixtures::with_orientation(jpeg, orientation))
}

/// A PDF of `pages` A4 pages, each showing a scanned receipt (a 1240x1754 JPEG, 150 dpi) and a
/// line of text.
fn receipts_pdf(pages: u32) -> anyhow::Result<Vec<u8>> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let mut kids = Vec::new();
    for n in 0..pages {
        let scan = photo(1240, 1754, 1000 + u64::from(n));
        let jpeg = jpeg_bytes(&scan, 85)?;
        let image_id = doc.add_object(
            Stream::new(
                dictionary! {
                    "Type" => "XObject",
                    "Subtype" => "Image",
                    "Width" => 1240,
                    "Height" => 1754,
                    "BitsPerComponent" => 8,
                    "ColorSpace" => "DeviceRGB",
                    "Filter" => "DCTDecode",
                },
                jpeg,
            )
            .with_compression(false),
        );
        let content = format!(
            "q 535.3 0 0 757.2 30 42 cm /Im0 Do Q BT /F1 10 Tf 30 810 Td (Receipt {}) Tj ET",
            n + 1
        );
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! {
                "XObject" => dictionary! { "Im0" => image_id },
                "Font" => dictionary! { "F1" => font_id },
            },
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => i64::from(pages),
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out)?;
    Ok(out)
}

fn build(file: &CorpusFile) -> anyhow::Result<Vec<u8>> {
    match file.name {
        "photo-upright.jpg" => jpeg_bytes(&photo(4032, 3024, 1), 90),
        "photo-exif6.jpg" => with_orientation(&jpeg_bytes(&photo(4032, 3024, 2), 90)?, 6),
        "photo-exif3.jpg" => with_orientation(&jpeg_bytes(&photo(4032, 3024, 3), 90)?, 3),
        "screenshot.png" => png_bytes(&screenshot(2560, 1600, 4)),
        "receipts-10p.pdf" => receipts_pdf(10),
        "tiny.jpg" => jpeg_bytes(&photo(16, 16, 5), 90),
        "tiny.png" => png_bytes(&photo(16, 16, 5)),
        other => anyhow::bail!("no recipe for corpus file {other}"),
    }
}

fn write_all(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in CORPUS_FILES {
        let bytes = build(file)?;
        let path = dir.join(file.name);
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{:<18} {:>10} bytes  {}",
            file.name,
            bytes.len(),
            file.description
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-corpus"));
    write_all(&dir)
}
