//! Test files made in code: JPEG, PNG, PDF, and the committed encrypted PDFs.

use image::{ImageEncoder, RgbImage};
use lopdf::{Document, Object, Stream, dictionary};

/// A `width`x`height` JPEG with a gradient (so it is not trivially compressible).
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x % 256) as u8,
            (y % 256) as u8,
            ((x * 7 + y * 3) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .expect("jpeg encodes");
    out
}

/// A `width`x`height` PNG.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, 128, (y % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .expect("png encodes");
    out
}

/// A PNG whose header claims 100000x100000 pixels (10 gigapixels) in about 60 bytes.
pub fn png_bomb() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PDF with `pages` pages.
pub fn pdf(pages: u32) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let mut kids = Vec::new();
    for n in 0..pages {
        let content = Stream::new(
            dictionary! {},
            format!("BT /F1 12 Tf 72 720 Td (page {n}) Tj ET").into_bytes(),
        );
        let content_id = doc.add_object(content);
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => pages as i64 },
        ),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("pdf saves");
    out
}

/// Pages of a PDF.
pub fn pdf_pages(bytes: &[u8]) -> usize {
    Document::load_mem(bytes)
        .expect("pdf loads")
        .get_pages()
        .len()
}

/// A PDF encrypted with a user password.
pub const USER_PASSWORD_PDF: &[u8] =
    include_bytes!("../../services/pipeline/tests/fixtures/user-password.pdf");
/// A PDF encrypted with only an owner password (opens without a password).
pub const OWNER_PASSWORD_PDF: &[u8] =
    include_bytes!("../../services/pipeline/tests/fixtures/owner-password.pdf");
