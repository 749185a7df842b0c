//! The files the upload benchmark sends, made in code and deterministic: a multi-page scanned
//! PDF of an exact size (pass-through), a 12 MP camera-like JPEG (converting), a PNG
//! decompression bomb and an oversize file (refusals).

use anyhow::{Context, bail};
use image::{ImageEncoder, RgbImage};
use lopdf::{Document, Object, Stream, dictionary};

/// Pixel size of a scanned page: A4 at 150 dpi.
const PAGE_PIXELS: (u32, u32) = (1240, 1754);

/// A small deterministic generator (xorshift64*), so every run sends the same bytes.
#[derive(Debug, Clone)]
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `-amplitude..=amplitude`.
    fn jitter(&mut self, amplitude: i32) -> i32 {
        let span = u64::try_from(2 * amplitude + 1).unwrap_or(1);
        i32::try_from(self.next() % span).unwrap_or(0) - amplitude
    }
}

fn clamp(value: i32) -> u8 {
    u8::try_from(value.clamp(0, 255)).unwrap_or(u8::MAX)
}

/// A `width` x `height` JPEG (quality 85) that compresses like a photo: smooth shapes plus
/// sensor-like noise of +-`noise`.
pub fn photo_jpeg(width: u32, height: u32, noise: i32) -> anyhow::Result<Vec<u8>> {
    let mut rng = Noise(0x9E37_79B9_7F4A_7C15 ^ (u64::from(width) << 32) ^ u64::from(height));
    let image = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let wave = ((fx * 23.0).sin() * (fy * 17.0).cos() * 60.0) as i32;
        let base = [
            (fx * 200.0) as i32 + wave,
            (fy * 180.0) as i32 + 40 - wave / 2,
            ((fx + fy) * 100.0) as i32 + 30,
        ];
        image::Rgb(base.map(|channel| clamp(channel + rng.jitter(noise))))
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(
            image.as_raw(),
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .context("encoding the JPEG")?;
    Ok(out)
}

/// A phone photo of a receipt as apps send them: 360x480, at the highest JPEG quality (from 90
/// down in steps of 5) that keeps it within 24 KB; it must come out between 16 and 24 KB.
pub fn receipt_jpeg() -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for quality in (30..=90).rev().step_by(5) {
        out = imaging_fixtures::scenes::photo_jpeg(360, 480, 21, quality);
        if out.len() <= 24 * 1024 {
            break;
        }
    }
    anyhow::ensure!(
        (16 * 1024..=24 * 1024).contains(&out.len()),
        "the receipt photo came out at {} bytes, not about 20 KB",
        out.len()
    );
    Ok(out)
}

/// A PDF of exactly `size` bytes that looks like a scanned document: A4 pages, each an
/// embedded JPEG (`DCTDecode`, as scanners write them), with XMP metadata padding the file to
/// the exact size.
pub fn scanned_pdf(size: usize) -> anyhow::Result<Vec<u8>> {
    // Scanner noise makes each page roughly 1 MB.
    let page = photo_jpeg(PAGE_PIXELS.0, PAGE_PIXELS.1, 14)?;
    let pages = (size.saturating_sub(64 * 1024) / page.len()).max(1);
    let mut padding = 0usize;
    for _ in 0..6 {
        let pdf = build_pdf(&page, pages, padding)?;
        match pdf.len() {
            len if len == size => return Ok(pdf),
            len if len < size => padding += size - len,
            len => {
                padding = padding.checked_sub(len - size).with_context(|| {
                    format!("{pages} pages of {} bytes exceed {size} bytes", page.len())
                })?
            }
        }
    }
    bail!("could not make a PDF of exactly {size} bytes")
}

fn build_pdf(jpeg: &[u8], pages: usize, padding: usize) -> anyhow::Result<Vec<u8>> {
    let (width, height) = (i64::from(PAGE_PIXELS.0), i64::from(PAGE_PIXELS.1));
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let mut kids = Vec::with_capacity(pages);
    for n in 0..pages {
        let image_id = doc.add_object(Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Image",
                "Width" => width,
                "Height" => height,
                "ColorSpace" => "DeviceRGB",
                "BitsPerComponent" => 8,
                "Filter" => "DCTDecode",
            },
            jpeg.to_vec(),
        ));
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            format!("q 595 0 0 842 0 0 cm /Scan{n} Do Q").into_bytes(),
        ));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! {
                "XObject" => dictionary! { format!("Scan{n}") => image_id },
            },
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    let count = i64::try_from(pages).context("page count")?;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    let mut xmp = br#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>"#.to_vec();
    xmp.resize(xmp.len() + padding, b' ');
    xmp.extend_from_slice(br#"<?xpacket end="w"?>"#);
    let metadata_id = doc.add_object(Stream::new(
        dictionary! { "Type" => "Metadata", "Subtype" => "XML" },
        xmp,
    ));
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
        "Metadata" => metadata_id,
    });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).context("writing the PDF")?;
    Ok(out)
}

/// A PNG whose header claims 100000 x 100000 pixels (10 gigapixels), about 60 bytes long.
pub fn png_bomb() -> Vec<u8> {
    imaging_e2e::fixtures::png_bomb()
}

/// `size` bytes that start like a PDF (so they pass the type sniffing while streaming) and
/// are otherwise filler: an upload over the 10 MB limit.
pub fn oversize_pdf(size: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
    bytes.resize(size, b'0');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanned_pdf_has_the_exact_size_and_parses() {
        let pdf = scanned_pdf(3_000_000).unwrap();
        assert_eq!(pdf.len(), 3_000_000);
        let doc = Document::load_mem(&pdf).unwrap();
        assert!(!doc.get_pages().is_empty());
    }

    #[test]
    fn the_photo_is_a_jpeg_of_the_asked_size() {
        let jpeg = photo_jpeg(64, 48, 10).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 48));
    }

    #[test]
    fn the_receipt_photo_is_about_20_kb() {
        let bytes = receipt_jpeg().unwrap();
        assert!(
            (16 * 1024..=24 * 1024).contains(&bytes.len()),
            "{} bytes",
            bytes.len()
        );
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 360);
    }
}
