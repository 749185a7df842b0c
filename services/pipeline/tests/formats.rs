//! Camera and scanner formats: HEIC stored as JPEG, TIFF as PDF, GIF as PNG, each checked with
//! readers this project did not write (Pillow, pillow-heif, poppler, qpdf, pypdf) on fixtures
//! made by encoders it did not write either.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_qpdf_accepts, pdfinfo_pages};
use imaging_fixtures::{
    GIF_ANIMATED, GIF_TRANSPARENT, HEIC_PLAIN, HEIC_ROTATED, TIFF_BIG, TIFF_BILEVEL_LZW, TIFF_G3,
    TIFF_G4, TIFF_JPEG, TIFF_LZW, TIFF_ONE_PAGE, TIFF_TILED, TIFF_WHITE_IS_ZERO, python,
};
use imaging_pipeline::{
    Inspected, Limits, MediaType, PipelineError, Step, append_to_report, estimate, inspect,
    start_report, to_webp,
};

fn stored(bytes: &[u8], media: MediaType) -> (Inspected, Vec<u8>) {
    let mut seen = inspect(bytes, media, &Limits::default()).unwrap();
    let converted = seen.converted.take().expect("a converted form");
    (seen, converted)
}

/// Renders every page of `pdf` with poppler at the TIFF page's own resolution and compares it
/// with Pillow's decoding of that page: prints, per page, the rendered size and the share of
/// pixels whose grey level is more than 48 outside the range of the decoded page's 3x3
/// neighbourhood (poppler's rasteriser may place an edge one pixel off, as it does for
/// tiff2pdf's output of the same files).
const RENDER_AND_COMPARE: &str = r#"
import sys, subprocess, os
from PIL import Image, ImageFilter
tif, pdf = sys.argv[1], sys.argv[2]
source = Image.open(tif)
out = []
for page in range(source.n_frames):
    source.seek(page)
    dx, dy = source.info.get("dpi", (72, 72))
    prefix = pdf + f"-{page}"
    subprocess.run(["pdftoppm", "-f", str(page + 1), "-l", str(page + 1), "-rx", str(dx),
                    "-ry", str(dy), "-gray", "-singlefile", "-png", pdf, prefix], check=True)
    rendered = Image.open(prefix + ".png").convert("L")
    expected = source.convert("L")
    if rendered.size != expected.size:
        out.append(f"{rendered.size[0]}x{rendered.size[1]}:size")
        continue
    a = rendered.tobytes()
    low = expected.filter(ImageFilter.MinFilter(3)).tobytes()
    high = expected.filter(ImageFilter.MaxFilter(3)).tobytes()
    off = sum(1 for x, lo, hi in zip(a, low, high) if x < lo - 48 or x > hi + 48)
    out.append(f"{rendered.size[0]}x{rendered.size[1]}:{off / len(a):.4f}")
print(" ".join(out))
"#;

/// Per page: (width, height, share of pixels off).
fn render_and_compare(tiff: &[u8], pdf: &[u8]) -> Vec<(u32, u32, f64)> {
    let printed = python(RENDER_AND_COMPARE, &[("in.tif", tiff), ("out.pdf", pdf)]);
    printed
        .split_whitespace()
        .map(|page| {
            let (size, off) = page.split_once(':').unwrap();
            let (w, h) = size.split_once('x').unwrap();
            (
                w.parse().unwrap(),
                h.parse().unwrap(),
                off.parse().unwrap_or(1.0),
            )
        })
        .collect()
}

/// Each image XObject's filter, in page order, as pypdf reads them.
fn filters(pdf: &[u8]) -> Vec<String> {
    let printed = python(
        r#"
import sys, pypdf
reader = pypdf.PdfReader(sys.argv[1])
names = []
for page in reader.pages:
    xobjects = page["/Resources"]["/XObject"]
    for name in sorted(xobjects, key=lambda n: int(n[3:])):
        names.append(str(xobjects[name].get_object()["/Filter"]))
print(" ".join(names))
"#,
        &[("out.pdf", pdf)],
    );
    printed.split_whitespace().map(str::to_owned).collect()
}

/// The page sizes (width, height) in points pypdf reads.
fn page_sizes(pdf: &[u8]) -> Vec<(f64, f64)> {
    python(
        r#"
import sys, pypdf
for page in pypdf.PdfReader(sys.argv[1]).pages:
    box = page.mediabox
    print(f"{float(box.width):.2f} {float(box.height):.2f}")
"#,
        &[("out.pdf", pdf)],
    )
    .lines()
    .map(|line| {
        let (w, h) = line.split_once(' ').unwrap();
        (w.parse().unwrap(), h.parse().unwrap())
    })
    .collect()
}

#[test]
fn a_g4_scan_becomes_one_pdf_page_per_tiff_page_with_its_strips_embedded_byte_for_byte() {
    let (seen, pdf) = stored(TIFF_G4, MediaType::Tiff);
    assert_eq!(seen.media, MediaType::Pdf);
    assert_eq!((seen.width, seen.height, seen.page_count), (850, 1100, 3));
    assert_qpdf_accepts(&pdf);
    assert_eq!(pdfinfo_pages(&pdf), 3);
    // 850x1100 pixels at 100 dpi: 612x792 pt, a letter page.
    for (w, h) in page_sizes(&pdf) {
        assert!(
            (w - 612.0).abs() < 0.01 && (h - 792.0).abs() < 0.01,
            "{w}x{h}"
        );
    }
    // Two strips a page, each a CCITT image whose data is the strip as the TIFF holds it.
    assert_eq!(filters(&pdf), vec!["/CCITTFaxDecode"; 6]);
    let strips = python(
        r#"
import sys
from PIL import Image
tif = Image.open(sys.argv[1])
for page in range(tif.n_frames):
    tif.seek(page)
    for offset, count in zip(tif.tag_v2[273], tif.tag_v2[279]):
        print(offset, count)
"#,
        &[("in.tif", TIFF_G4)],
    );
    for line in strips.lines() {
        let (offset, count) = line.split_once(' ').unwrap();
        let (offset, count): (usize, usize) = (offset.parse().unwrap(), count.parse().unwrap());
        let strip = &TIFF_G4[offset..offset + count];
        assert!(
            memchr::memmem::find(&pdf, strip).is_some(),
            "strip at {offset} is not in the PDF as it is"
        );
    }
    for (w, h, off) in render_and_compare(TIFF_G4, &pdf) {
        assert_eq!((w, h), (850, 1100));
        assert!(off < 0.001, "{off} of the pixels differ");
    }
}

#[test]
fn a_bigtiff_is_read_like_a_tiff() {
    assert_eq!(
        imaging_pipeline::sniff(&TIFF_BIG[..16]),
        Some(MediaType::Tiff)
    );
    let (seen, pdf) = stored(TIFF_BIG, MediaType::Tiff);
    assert_eq!((seen.width, seen.height, seen.page_count), (850, 1100, 3));
    assert_qpdf_accepts(&pdf);
    assert_eq!(filters(&pdf), vec!["/CCITTFaxDecode"; 6]);
    for (_, _, off) in render_and_compare(TIFF_G4, &pdf) {
        assert!(off < 0.001, "{off} of the pixels differ");
    }
}

#[test]
fn a_group_3_fax_keeps_its_coding_and_its_non_square_resolution() {
    let (seen, pdf) = stored(TIFF_G3, MediaType::Tiff);
    assert_eq!(seen.page_count, 1);
    assert_qpdf_accepts(&pdf);
    let sizes = page_sizes(&pdf);
    // 1728 px at 204 dpi, 1100 px at 196 dpi.
    assert!((sizes[0].0 - 609.88).abs() < 0.02, "{sizes:?}");
    assert!((sizes[0].1 - 404.08).abs() < 0.02, "{sizes:?}");
    // Strips of 64 rows: 18 images.
    assert_eq!(filters(&pdf), vec!["/CCITTFaxDecode"; 18]);
    for (w, h, off) in render_and_compare(TIFF_G3, &pdf) {
        assert_eq!((w, h), (1728, 1100));
        assert!(off < 0.001, "{off} of the pixels differ");
    }
}

#[test]
fn jpeg_strips_are_embedded_as_dct_images_and_show_the_scan() {
    let (seen, pdf) = stored(TIFF_JPEG, MediaType::Tiff);
    assert_eq!(seen.page_count, 2);
    assert_qpdf_accepts(&pdf);
    assert_eq!(pdfinfo_pages(&pdf), 2);
    // 200 rows and 400 rows in strips of 16.
    assert_eq!(filters(&pdf), vec!["/DCTDecode"; 13 + 25]);
    for (_, _, off) in render_and_compare(TIFF_JPEG, &pdf) {
        assert!(off < 0.01, "{off} of the pixels differ");
    }
}

#[test]
fn lzw_strips_and_tiles_are_decoded_and_stored_losslessly() {
    for tiff in [TIFF_LZW, TIFF_TILED] {
        let (seen, pdf) = stored(tiff, MediaType::Tiff);
        assert_eq!((seen.width, seen.height, seen.page_count), (300, 200, 2));
        assert_qpdf_accepts(&pdf);
        assert_eq!(filters(&pdf), vec!["/FlateDecode"; 2]);
        let sizes = page_sizes(&pdf);
        assert!((sizes[0].0 - 144.0).abs() < 0.01 && (sizes[0].1 - 96.0).abs() < 0.01);
        for (_, _, off) in render_and_compare(tiff, &pdf) {
            assert!(off < 0.001, "{off} of the pixels differ");
        }
    }
}

#[test]
fn decoded_bilevel_pages_keep_their_bits_and_their_photometric() {
    for (tiff, pages) in [(TIFF_BILEVEL_LZW, 3), (TIFF_WHITE_IS_ZERO, 1)] {
        let (seen, pdf) = stored(tiff, MediaType::Tiff);
        assert_eq!(seen.page_count, pages);
        assert_qpdf_accepts(&pdf);
        assert_eq!(filters(&pdf), vec!["/FlateDecode"; pages as usize]);
        for (_, _, off) in render_and_compare(tiff, &pdf) {
            assert!(off < 0.001, "{off} of the pixels differ");
        }
    }
}

/// Pillow's reading of a stored image: size, mode, whether any metadata is left, the mean
/// difference of its pixels from the reference file's (the largest channel's), and the same for
/// a JPEG Pillow itself makes of the reference at quality 90 (what that quality loses).
const COMPARE_IMAGES: &str = r#"
import sys
import pillow_heif
from PIL import Image, ImageChops, ImageStat
pillow_heif.register_heif_opener()
stored, reference = Image.open(sys.argv[1]), Image.open(sys.argv[2])
exif = stored.getexif()
meta = bool(exif) or "icc_profile" in stored.info or "xmp" in stored.info
a, b = stored.convert("RGBA"), reference.convert("RGBA")
diff = ImageStat.Stat(ImageChops.difference(a, b)).mean if a.size == b.size else [999]
import io
own = io.BytesIO()
reference.convert("RGB").save(own, "JPEG", quality=90)
own = Image.open(own).convert("RGBA")
loss = ImageStat.Stat(ImageChops.difference(own, b)).mean
print(stored.format, stored.size[0], stored.size[1], stored.mode, int(meta), f"{max(diff):.2f}",
      f"{max(loss):.2f}")
"#;

fn compare(stored: &[u8], name: &str, reference: &[u8], reference_name: &str) -> Vec<String> {
    python(
        COMPARE_IMAGES,
        &[(name, stored), (reference_name, reference)],
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[test]
fn a_heic_photo_is_stored_as_an_upright_jpeg_of_the_same_size_without_metadata() {
    let (seen, jpeg) = stored(HEIC_ROTATED, MediaType::Heic);
    assert_eq!(seen.media, MediaType::Jpeg);
    assert_eq!((seen.width, seen.height), (480, 640));
    // pillow-heif applies the same rotation: the pixels match up to JPEG's loss.
    let read = compare(&jpeg, "out.jpg", HEIC_ROTATED, "in.heic");
    assert_eq!(&read[..5], ["JPEG", "480", "640", "RGB", "0"]);
    assert_within_jpeg_loss(&read);
    // The red square the camera put top-left is top-right once the photo is upright.
    let corners = python(
        r#"
import sys
from PIL import Image
image = Image.open(sys.argv[1]).convert("RGB")
w, h = image.size
print(image.getpixel((w - 20, 20)), image.getpixel((20, 20)))
"#,
        &[("out.jpg", &jpeg)],
    );
    assert!(corners.starts_with("(2"), "top-right is not red: {corners}");

    let (seen, jpeg) = stored(HEIC_PLAIN, MediaType::Heic);
    assert_eq!((seen.width, seen.height), (320, 240));
    let read = compare(&jpeg, "out.jpg", HEIC_PLAIN, "in.heic");
    assert_eq!(&read[..5], ["JPEG", "320", "240", "RGB", "0"]);
    assert_within_jpeg_loss(&read);
}

/// The stored JPEG is as close to pillow-heif's decoding as Pillow's own quality-90 JPEG of it.
fn assert_within_jpeg_loss(read: &[String]) {
    let (ours, pillows) = (
        read[5].parse::<f64>().unwrap(),
        read[6].parse::<f64>().unwrap(),
    );
    assert!(ours <= pillows * 1.1 + 0.3, "{read:?}");
}

#[test]
fn a_gif_is_stored_as_a_png_of_its_first_frame_pixel_for_pixel() {
    for (gif, size) in [(GIF_ANIMATED, (200, 260)), (GIF_TRANSPARENT, (120, 90))] {
        let (seen, png) = stored(gif, MediaType::Gif);
        assert_eq!(seen.media, MediaType::Png);
        assert_eq!((seen.width, seen.height), size);
        let read = compare(&png, "out.png", gif, "in.gif");
        assert_eq!(read[0], "PNG");
        assert_eq!(read[3], "P");
        assert_eq!(read[5], "0.00", "{read:?}");
    }
}

#[test]
fn reports_take_every_format_as_pages() {
    let limits = Limits::default();
    let mut report = start_report(HEIC_ROTATED, MediaType::Heic, &limits).unwrap();
    let mut bytes = report.bytes.clone();
    for (upload, media) in [
        (TIFF_G4, MediaType::Tiff),
        (GIF_ANIMATED, MediaType::Gif),
        (TIFF_JPEG, MediaType::Tiff),
    ] {
        report = append_to_report(
            &report.layout,
            bytes.len() as u64,
            report.page_count,
            upload,
            media,
            &limits,
        )
        .unwrap();
        bytes.extend_from_slice(&report.bytes);
    }
    assert_eq!(report.page_count, 1 + 3 + 1 + 2);
    assert_qpdf_accepts(&bytes);
    assert_eq!(pdfinfo_pages(&bytes), 7);
    let filters = filters(&bytes);
    assert_eq!(filters[0], "/DCTDecode");
    assert_eq!(filters[1..7], vec!["/CCITTFaxDecode"; 6]);
    assert_eq!(filters[7], "/FlateDecode");
}

#[test]
fn the_workspace_conversion_takes_heic_gif_and_one_page_tiff() {
    let limits = Limits::default();
    let webp = to_webp(HEIC_ROTATED, MediaType::Heic, &limits).unwrap();
    assert_eq!((webp.width, webp.height), (480, 640));
    let webp = to_webp(GIF_TRANSPARENT, MediaType::Gif, &limits).unwrap();
    assert_eq!((webp.width, webp.height), (120, 90));
    // 800x1200 brought down to a long edge of 2048: kept.
    let webp = to_webp(TIFF_ONE_PAGE, MediaType::Tiff, &limits).unwrap();
    assert_eq!((webp.width, webp.height), (800, 1200));
    let read = python(
        "import sys\nfrom PIL import Image\nprint(Image.open(sys.argv[1]).format, Image.open(sys.argv[1]).size)",
        &[("out.webp", &webp.bytes)],
    );
    assert_eq!(read, "WEBP (800, 1200)");
    assert!(matches!(
        to_webp(TIFF_G4, MediaType::Tiff, &limits),
        Err(PipelineError::Unsupported(_))
    ));
}

#[test]
fn each_format_is_held_to_the_pixel_limit_from_its_header() {
    let limits = Limits {
        max_pixels: 40_000,
        ..Limits::default()
    };
    for (bytes, media) in [
        (HEIC_ROTATED, MediaType::Heic),
        (TIFF_G4, MediaType::Tiff),
        (GIF_ANIMATED, MediaType::Gif),
    ] {
        let refused = estimate(bytes, media, Step::Inspect, &limits);
        assert!(
            matches!(
                refused,
                Err(PipelineError::TooManyPixels { .. } | PipelineError::TooComplex { .. })
            ),
            "{media:?}: {refused:?}"
        );
        assert!(inspect(bytes, media, &limits).is_err());
    }
}

#[test]
fn the_declared_type_must_be_what_the_bytes_are() {
    for (bytes, declared) in [
        (HEIC_PLAIN, MediaType::Jpeg),
        (TIFF_G4, MediaType::Pdf),
        (GIF_ANIMATED, MediaType::Png),
        (common::jpeg(10, 10).as_slice(), MediaType::Heic),
    ] {
        assert!(matches!(
            inspect(bytes, declared, &Limits::default()),
            Err(PipelineError::ContentTypeMismatch { .. })
        ));
    }
}

/// `bytes` with the first `ispe` box (a HEIF image's size) claiming `width` x `height`.
fn heic_claiming(bytes: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = memchr::memmem::find(&out, b"ispe").unwrap() + 8;
    out[at..at + 4].copy_from_slice(&width.to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&height.to_be_bytes());
    out
}

#[test]
fn a_heic_claiming_a_huge_image_is_refused_before_it_is_decoded() {
    let bomb = heic_claiming(HEIC_PLAIN, 60_000, 60_000);
    for step in [Step::Inspect, Step::Webp] {
        let refused = estimate(&bomb, MediaType::Heic, step, &Limits::default());
        assert!(
            matches!(
                refused,
                Err(PipelineError::TooManyPixels { .. } | PipelineError::TooComplex { .. })
            ),
            "{refused:?}"
        );
    }
    let refused = inspect(&bomb, MediaType::Heic, &Limits::default());
    assert!(
        matches!(
            refused,
            Err(PipelineError::TooManyPixels { .. } | PipelineError::TooComplex { .. })
        ),
        "{refused:?}"
    );
    // A size that disagrees with the coded image is no image at all.
    let lying = heic_claiming(HEIC_PLAIN, 64, 48);
    assert!(inspect(&lying, MediaType::Heic, &Limits::default()).is_err());
}

/// A GIF of `frames` 1x1 frames on a `width` x `height` canvas, written by hand.
fn gif_frames(width: u16, height: u16, frames: usize) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    // Global colour table of 2 entries.
    out.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    for _ in 0..frames {
        out.push(0x2C);
        out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0, 0]);
        // LZW minimum code size 2; clear, 0, end; then the block terminator.
        out.extend_from_slice(&[2, 2, 0x44, 0x01, 0]);
    }
    out.push(0x3B);
    out
}

#[test]
fn a_gif_with_a_huge_canvas_or_countless_frames_is_refused() {
    let huge = gif_frames(65_535, 65_535, 1);
    assert!(matches!(
        estimate(&huge, MediaType::Gif, Step::Inspect, &Limits::default()),
        Err(PipelineError::TooManyPixels {
            width: 65_535,
            height: 65_535
        })
    ));
    let ok = gif_frames(4, 4, 3);
    let (seen, png) = stored(&ok, MediaType::Gif);
    assert_eq!((seen.width, seen.height), (4, 4));
    assert!(png.starts_with(b"\x89PNG"));
    let mut limits = Limits::default();
    limits.pdf.max_pages = 50;
    assert!(inspect(&gif_frames(4, 4, 50), MediaType::Gif, &limits).is_ok());
    assert!(matches!(
        inspect(&gif_frames(4, 4, 51), MediaType::Gif, &limits),
        Err(PipelineError::TooComplex { what: "GIF frames" })
    ));
    // Cut inside the frames that follow the first: refused, not half read.
    let cut = gif_frames(4, 4, 3);
    assert!(inspect(&cut[..cut.len() - 8], MediaType::Gif, &Limits::default()).is_err());
}

#[test]
fn tiff_pages_together_may_decode_to_at_most_twice_the_image_limit() {
    // Three bilevel pages of 850x1100: 107 bytes a row, 117,700 bytes a page, 353,100 in all.
    let limits = Limits {
        max_image_bytes: 176_550,
        ..Limits::default()
    };
    assert!(inspect(TIFF_G4, MediaType::Tiff, &limits).is_ok());
    let limits = Limits {
        max_image_bytes: 176_549,
        ..Limits::default()
    };
    assert!(matches!(
        inspect(TIFF_G4, MediaType::Tiff, &limits),
        Err(PipelineError::TooComplex {
            what: "TIFF pages decoded"
        })
    ));
}

#[test]
fn a_damaged_fax_strip_is_refused() {
    // Zero the first strip's coded lines: no EOLs left where rows should be.
    let (seen, _) = stored(TIFF_G3, MediaType::Tiff);
    assert_eq!(seen.page_count, 1);
    let offsets = python(
        "import sys\nfrom PIL import Image\ntif = Image.open(sys.argv[1])\nprint(tif.tag_v2[273][0], tif.tag_v2[279][0])",
        &[("in.tif", TIFF_G3)],
    );
    let (offset, count) = offsets.split_once(' ').unwrap();
    let (offset, count): (usize, usize) = (offset.parse().unwrap(), count.parse().unwrap());
    let mut damaged = TIFF_G3.to_vec();
    damaged[offset..offset + count].fill(0xFF);
    assert!(matches!(
        inspect(&damaged, MediaType::Tiff, &Limits::default()),
        Err(PipelineError::Corrupt(_))
    ));
    let mut damaged = TIFF_G4.to_vec();
    let strips = python(
        "import sys\nfrom PIL import Image\ntif = Image.open(sys.argv[1])\nprint(tif.tag_v2[273][0], tif.tag_v2[279][0])",
        &[("in.tif", TIFF_G4)],
    );
    let (offset, count) = strips.split_once(' ').unwrap();
    let (offset, count): (usize, usize) = (offset.parse().unwrap(), count.parse().unwrap());
    damaged[offset..offset + count].fill(0);
    assert!(inspect(&damaged, MediaType::Tiff, &Limits::default()).is_err());
}
