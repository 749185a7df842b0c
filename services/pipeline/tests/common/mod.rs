//! Test inputs made in code: JPEGs, PNGs and PDFs of known content, an EXIF-oriented JPEG, a PNG
//! decompression bomb, and the two encrypted PDF fixtures.

#![allow(dead_code, clippy::unwrap_used)]

use image::{ExtendedColorType, ImageEncoder, RgbImage, RgbaImage};
use lopdf::{Document, Object, Stream, dictionary};

#[allow(unused_imports)]
pub use imaging_fixtures::{
    OWNER_PASSWORD_PDF, USER_PASSWORD_PDF, assert_qpdf_accepts, pdfinfo_pages, png_bomb,
    with_orientation,
};

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
