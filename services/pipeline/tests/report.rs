//! Report PDFs as a reader of the report sees them: pages, their order, embedded images.

#![allow(clippy::unwrap_used)]

mod common;

use common::{
    OWNER_PASSWORD_PDF, image_streams, jpeg, media_box, page_widths, pdf, png, red_blue_jpeg,
    with_orientation,
};
use imaging_pipeline::{Limits, MediaType, PipelineError, append_to_report, start_report};
use lopdf::{Document, Object};

#[test]
fn a_pdf_starts_a_report_unchanged() {
    let original = pdf(2, 100);
    let report = start_report(&original, MediaType::Pdf, &Limits::default()).unwrap();
    assert_eq!(report.bytes, original);
    assert_eq!(report.page_count, 2);
}

#[test]
fn a_jpeg_starts_a_one_page_report_with_the_jpeg_embedded_as_is() {
    let photo = jpeg(120, 90);
    let report = start_report(&photo, MediaType::Jpeg, &Limits::default()).unwrap();
    assert_eq!(report.page_count, 1);
    assert_eq!(
        Document::load_mem(&report.bytes).unwrap().get_pages().len(),
        1
    );
    let images = image_streams(&report.bytes);
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(
        image.content, photo,
        "the JPEG bytes are embedded without re-encoding"
    );
    assert_eq!(
        image.dict.get(b"Filter").unwrap().as_name().unwrap(),
        b"DCTDecode"
    );
    assert_eq!(image.dict.get(b"Width").unwrap().as_i64().unwrap(), 120);
    assert_eq!(image.dict.get(b"Height").unwrap().as_i64().unwrap(), 90);
    assert_eq!(
        image.dict.get(b"ColorSpace").unwrap().as_name().unwrap(),
        b"DeviceRGB"
    );
}

#[test]
fn an_exif_rotated_jpeg_gets_an_upright_page() {
    // 400x200 stored, orientation 6: upright it is 200 wide and 400 tall.
    let bytes = with_orientation(&red_blue_jpeg(400, 200), 6);
    let report = start_report(&bytes, MediaType::Jpeg, &Limits::default()).unwrap();
    let doc = Document::load_mem(&report.bytes).unwrap();
    let page = *doc.get_pages().values().next().unwrap();
    assert_eq!(media_box(&doc, page), vec![0.0, 0.0, 421.0, 842.0]);
    assert!(
        doc.get_dictionary(page).unwrap().get(b"Rotate").is_err(),
        "no /Rotate, the matrix turns it"
    );
    assert_eq!(image_streams(&report.bytes)[0].content, bytes);
}

#[test]
fn a_png_is_embedded_as_flate_rgb() {
    let report = start_report(&png(30, 20), MediaType::Png, &Limits::default()).unwrap();
    assert_eq!(report.page_count, 1);
    let image = &image_streams(&report.bytes)[0];
    assert_eq!(
        image.dict.get(b"Filter").unwrap().as_name().unwrap(),
        b"FlateDecode"
    );
    assert_eq!(
        image.dict.get(b"ColorSpace").unwrap().as_name().unwrap(),
        b"DeviceRGB"
    );
    assert_eq!(image.decompressed_content().unwrap().len(), 30 * 20 * 3);
}

#[test]
fn a_png_appended_to_a_two_page_pdf_makes_three_pages() {
    let limits = Limits::default();
    let report = append_to_report(&pdf(2, 100), &png(30, 20), MediaType::Png, &limits).unwrap();
    assert_eq!(report.page_count, 3);
    let widths = page_widths(&report.bytes);
    assert_eq!(&widths[..2], &[100.0, 101.0]);
    assert_eq!(widths[2], 842.0, "the image page comes last");
    // The PDF's pages inherit /Rotate 90 from their tree; the image page must not.
    let doc = Document::load_mem(&report.bytes).unwrap();
    let mut node = doc.get_pages().values().last().copied();
    while let Some(id) = node {
        let dict = doc.get_dictionary(id).unwrap();
        assert!(
            dict.get(b"Rotate").is_err(),
            "no /Rotate on the image page or above it"
        );
        node = dict.get(b"Parent").and_then(Object::as_reference).ok();
    }
}

#[test]
fn a_two_page_pdf_appended_to_a_one_page_report_keeps_the_order() {
    let limits = Limits::default();
    let report = start_report(&pdf(1, 100), MediaType::Pdf, &limits).unwrap();
    let report = append_to_report(&report.bytes, &pdf(2, 200), MediaType::Pdf, &limits).unwrap();
    assert_eq!(report.page_count, 3);
    assert_eq!(page_widths(&report.bytes), vec![100.0, 200.0, 201.0]);
    // The moved pages carry what they inherited from their old page tree.
    let doc = Document::load_mem(&report.bytes).unwrap();
    let pages: Vec<_> = doc.get_pages().into_values().collect();
    for &page in &pages[1..] {
        let page = doc.get_dictionary(page).unwrap();
        assert_eq!(page.get(b"Rotate").unwrap().as_i64().unwrap(), 90);
    }
    // The report's first page keeps the rotation it inherited, without handing it on.
    let first = doc.get_dictionary(pages[0]).unwrap();
    assert_eq!(first.get(b"Rotate").unwrap().as_i64().unwrap(), 90);
    let root = doc.catalog().unwrap().get(b"Pages").unwrap();
    let root = doc.get_dictionary(root.as_reference().unwrap()).unwrap();
    assert_eq!(root.get(b"Count").unwrap().as_i64().unwrap(), 3);
    assert!(root.get(b"Rotate").is_err());
}

#[test]
fn sixteen_appends_make_seventeen_pages() {
    let limits = Limits::default();
    let mut report = start_report(&jpeg(20, 20), MediaType::Jpeg, &limits).unwrap();
    for n in 0..16 {
        report = match n % 3 {
            0 => append_to_report(&report.bytes, &pdf(1, 300 + n), MediaType::Pdf, &limits),
            1 => append_to_report(&report.bytes, &jpeg(20, 20), MediaType::Jpeg, &limits),
            _ => append_to_report(&report.bytes, &png(20, 20), MediaType::Png, &limits),
        }
        .unwrap();
    }
    assert_eq!(report.page_count, 17);
    let widths = page_widths(&report.bytes);
    assert_eq!(widths.len(), 17);
    assert_eq!(widths[1], 300.0);
    assert_eq!(widths[4], 303.0);
    let doc = Document::load_mem(&report.bytes).unwrap();
    let orphans = doc.objects.values().filter(|o| matches!(o, Object::Dictionary(d) if d.has(b"Type") && d.get(b"Type").unwrap().as_name().unwrap() == b"Catalog")).count();
    assert_eq!(
        orphans, 1,
        "one catalog: the appended PDFs' catalogs are not carried along"
    );
}

#[test]
fn encrypted_or_unsupported_uploads_are_not_appended() {
    let limits = Limits::default();
    let report = start_report(&jpeg(10, 10), MediaType::Jpeg, &limits).unwrap();
    let result = append_to_report(&report.bytes, OWNER_PASSWORD_PDF, MediaType::Pdf, &limits);
    assert!(
        matches!(result, Err(PipelineError::EncryptedPdf)),
        "{result:?}"
    );
    let webp = imaging_pipeline::to_webp(&jpeg(10, 10), MediaType::Jpeg, &limits).unwrap();
    let result = append_to_report(&report.bytes, &webp.bytes, MediaType::Webp, &limits);
    assert!(
        matches!(result, Err(PipelineError::UnsupportedMediaType)),
        "{result:?}"
    );
    let result = append_to_report(&report.bytes, &jpeg(10, 10), MediaType::Png, &limits);
    assert!(
        matches!(result, Err(PipelineError::ContentTypeMismatch { .. })),
        "{result:?}"
    );
}

/// A valid one-page PDF whose page uses object number 4294967294 (u32::MAX - 1).
fn pdf_with_huge_object_numbers() -> Vec<u8> {
    use lopdf::{Document, Object, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let page_id = (4_294_967_294, 0);
    doc.objects.insert(
        page_id,
        Object::Dictionary(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), 300.into(), 400.into()],
        }),
    );
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![Object::Reference(page_id)],
            "Count" => 1,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.max_id = 4_294_967_294;
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

#[test]
fn a_first_pdf_with_object_numbers_near_u32_max_stays_appendable() {
    let limits = Limits::default();
    let first = pdf_with_huge_object_numbers();
    assert!(lopdf::Document::load_mem(&first).is_ok(), "a valid PDF");
    let report = start_report(&first, MediaType::Pdf, &limits).unwrap();
    assert_eq!(report.page_count, 1);
    let report = append_to_report(&report.bytes, &jpeg(40, 30), MediaType::Jpeg, &limits).unwrap();
    assert_eq!(report.page_count, 2);
    let report = append_to_report(&report.bytes, &pdf(2, 100), MediaType::Pdf, &limits).unwrap();
    assert_eq!(report.page_count, 4);
    assert_eq!(
        lopdf::Document::load_mem(&report.bytes)
            .unwrap()
            .get_pages()
            .len(),
        4
    );
}
