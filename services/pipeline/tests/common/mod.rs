//! Test inputs made in code: JPEGs, PNGs and PDFs of known content, an EXIF-oriented JPEG, a PNG
//! decompression bomb, and the two encrypted PDF fixtures.

#![allow(dead_code, clippy::unwrap_used)]

use image::{ExtendedColorType, ImageEncoder, RgbImage, RgbaImage};
use lopdf::{Document, Object, Stream, dictionary};

#[allow(unused_imports)]
pub use imaging_fixtures::{OWNER_PASSWORD_PDF, USER_PASSWORD_PDF, png_bomb, with_orientation};

pub fn jpeg_of(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// A JPEG with a gradient, so it is not trivially compressible.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    jpeg_of(&RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    }))
}

/// A JPEG whose left half is red and right half blue.
pub fn red_blue_jpeg(width: u32, height: u32) -> Vec<u8> {
    jpeg_of(&RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    }))
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, _| image::Rgb([(x % 256) as u8, 10, 200]));
    png_of(img.as_raw(), width, height, ExtendedColorType::Rgb8)
}

/// An RGBA PNG whose alpha is `alpha` everywhere.
pub fn rgba_png(width: u32, height: u32, alpha: u8) -> Vec<u8> {
    let img = RgbaImage::from_pixel(width, height, image::Rgba([10, 200, 10, alpha]));
    png_of(img.as_raw(), width, height, ExtendedColorType::Rgba8)
}

fn png_of(raw: &[u8], width: u32, height: u32, color: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(raw, width, height, color)
        .unwrap();
    out
}

/// A PDF whose page `n` (from 0) has a MediaBox `first_width + n` points wide, so page order
/// can be read back. The MediaBox and Resources sit on the page tree root and are inherited,
/// except for the width, which each page overrides.
pub fn pdf(pages: u32, first_width: i64) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let kids: Vec<Object> = (0..pages)
        .map(|n| {
            let content = doc.add_object(Stream::new(dictionary! {}, b"0 0 m".to_vec()));
            let width = first_width + i64::from(n);
            Object::Reference(doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content,
                "MediaBox" => vec![0.into(), 0.into(), width.into(), 500.into()],
            }))
        })
        .collect();
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => i64::from(pages),
            "Rotate" => 90,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// MediaBox widths of the pages, in page order.
pub fn page_widths(bytes: &[u8]) -> Vec<f32> {
    let doc = Document::load_mem(bytes).unwrap();
    doc.get_pages()
        .values()
        .map(|id| media_box(&doc, *id)[2])
        .collect()
}

/// A page's own MediaBox.
pub fn media_box(doc: &Document, page: lopdf::ObjectId) -> Vec<f32> {
    let page = doc.get_dictionary(page).unwrap();
    let media_box = page.get(b"MediaBox").unwrap().as_array().unwrap();
    media_box.iter().map(|n| n.as_float().unwrap()).collect()
}

/// The image XObject streams in a PDF.
pub fn image_streams(bytes: &[u8]) -> Vec<Stream> {
    let doc = Document::load_mem(bytes).unwrap();
    doc.objects
        .values()
        .filter_map(|o| match o {
            Object::Stream(s)
                if s.dict.get(b"Subtype").and_then(Object::as_name).ok() == Some(b"Image") =>
            {
                Some(s.clone())
            }
            _ => None,
        })
        .collect()
}

/// Writes `bytes` to a fresh temporary file and returns its path.
fn temp_pdf(bytes: &[u8]) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "imaging-pipeline-test-{}-{}.pdf",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `qpdf --check` (an independent parser) passes the PDF with no error and no warning.
pub fn assert_qpdf_accepts(bytes: &[u8]) {
    let path = temp_pdf(bytes);
    let output = std::process::Command::new("qpdf")
        .arg("--check")
        .arg(&path)
        .output()
        .expect("qpdf must be installed (the README's test command installs it)");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "qpdf --check: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The page count poppler's `pdfinfo` (a third parser) reads, failing on any error it prints.
pub fn pdfinfo_pages(bytes: &[u8]) -> usize {
    let path = temp_pdf(bytes);
    let output = std::process::Command::new("pdfinfo")
        .arg(&path)
        .output()
        .expect("pdfinfo must be installed (the README's test command installs poppler-utils)");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("Error"),
        "pdfinfo: {stderr}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("Pages:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap()
}
