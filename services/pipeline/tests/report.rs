//! Report PDFs as a reader of the report sees them: pages, their order, embedded images.

#![allow(clippy::unwrap_used)]

mod common;

use common::{
    OWNER_PASSWORD_PDF, assert_qpdf_accepts, image_streams, jpeg, media_box, page_widths, pdf,
    pdfinfo_pages, png, red_blue_jpeg, with_orientation,
};
use imaging_pipeline::{
    Limits, MediaType, PipelineError, ReportUpdate, adopt_report, append_to_report, start_report,
};
use lopdf::{Document, Object};

/// A report as storage holds it: every update's bytes after the previous ones.
struct Report {
    bytes: Vec<u8>,
    update: ReportUpdate,
}

impl Report {
    fn start(bytes: &[u8], media: MediaType) -> Self {
        let update = start_report(bytes, media, &Limits::default()).unwrap();
        Report {
            bytes: update.bytes.clone(),
            update,
        }
    }

    fn try_append(&mut self, bytes: &[u8], media: MediaType) -> Result<(), PipelineError> {
        let update = append_to_report(
            &self.update.layout,
            self.bytes.len() as u64,
            self.update.page_count,
            bytes,
            media,
            &Limits::default(),
        )?;
        self.bytes.extend_from_slice(&update.bytes);
        self.update = update;
        Ok(())
    }

    fn append(&mut self, bytes: &[u8], media: MediaType) {
        self.try_append(bytes, media).unwrap();
    }

    fn page_count(&self) -> u32 {
        self.update.page_count
    }
}

#[test]
fn a_pdf_starts_a_report_byte_for_byte_followed_by_an_update() {
    let original = pdf(2, 100);
    let report = Report::start(&original, MediaType::Pdf);
    assert!(report.bytes.starts_with(&original));
    assert_eq!(report.page_count(), 2);
    assert_eq!(page_widths(&report.bytes), vec![100.0, 101.0]);
    assert_qpdf_accepts(&report.bytes);
    assert_eq!(pdfinfo_pages(&report.bytes), 2);
}

#[test]
fn every_append_leaves_the_report_before_it_as_an_exact_prefix() {
    let mut report = Report::start(&jpeg(30, 20), MediaType::Jpeg);
    for n in 0..4i64 {
        let before = report.bytes.clone();
        report.append(&pdf(1, 300 + n), MediaType::Pdf);
        assert!(report.bytes.starts_with(&before));
        let increment = report.bytes.len() - before.len();
        assert!(
            increment < 4096,
            "an append writes its own objects only: {increment}"
        );
    }
}

#[test]
fn a_jpeg_starts_a_one_page_report_with_the_jpeg_embedded_as_is() {
    let photo = jpeg(120, 90);
    let report = Report::start(&photo, MediaType::Jpeg);
    assert_eq!(report.page_count(), 1);
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
    let report = Report::start(&bytes, MediaType::Jpeg);
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
    let report = Report::start(&png(30, 20), MediaType::Png);
    assert_eq!(report.page_count(), 1);
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
    let mut report = Report::start(&pdf(2, 100), MediaType::Pdf);
    report.append(&png(30, 20), MediaType::Png);
    assert_eq!(report.page_count(), 3);
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
    let mut report = Report::start(&pdf(1, 100), MediaType::Pdf);
    report.append(&pdf(2, 200), MediaType::Pdf);
    assert_eq!(report.page_count(), 3);
    assert_eq!(page_widths(&report.bytes), vec![100.0, 200.0, 201.0]);
    // The moved pages carry what they inherited from their old page tree.
    let doc = Document::load_mem(&report.bytes).unwrap();
    let pages: Vec<_> = doc.get_pages().into_values().collect();
    for &page in &pages[1..] {
        let page = doc.get_dictionary(page).unwrap();
        assert_eq!(page.get(b"Rotate").unwrap().as_i64().unwrap(), 90);
    }
    // The report's first page keeps the rotation it inherits from its own tree, without
    // handing it on.
    let mut node = Some(pages[0]);
    let mut rotate = None;
    while let Some(id) = node {
        let dict = doc.get_dictionary(id).unwrap();
        rotate = rotate.or_else(|| dict.get(b"Rotate").and_then(Object::as_i64).ok());
        node = dict.get(b"Parent").and_then(Object::as_reference).ok();
    }
    assert_eq!(rotate, Some(90));
    let root = doc.catalog().unwrap().get(b"Pages").unwrap();
    let root = doc.get_dictionary(root.as_reference().unwrap()).unwrap();
    assert_eq!(root.get(b"Count").unwrap().as_i64().unwrap(), 3);
    assert!(root.get(b"Rotate").is_err());
    assert_qpdf_accepts(&report.bytes);
    assert_eq!(pdfinfo_pages(&report.bytes), 3);
}

#[test]
fn sixteen_appends_make_seventeen_pages() {
    let mut report = Report::start(&jpeg(20, 20), MediaType::Jpeg);
    for n in 0..16 {
        match n % 3 {
            0 => report.append(&pdf(1, 300 + n), MediaType::Pdf),
            1 => report.append(&jpeg(20, 20), MediaType::Jpeg),
            _ => report.append(&png(20, 20), MediaType::Png),
        }
    }
    assert_eq!(report.page_count(), 17);
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
    assert_qpdf_accepts(&report.bytes);
    assert_eq!(pdfinfo_pages(&report.bytes), 17);
}

#[test]
fn encrypted_or_unsupported_uploads_are_not_appended() {
    let limits = Limits::default();
    let mut report = Report::start(&jpeg(10, 10), MediaType::Jpeg);
    let result = report.try_append(OWNER_PASSWORD_PDF, MediaType::Pdf);
    assert!(
        matches!(result, Err(PipelineError::EncryptedPdf)),
        "{result:?}"
    );
    let webp = imaging_pipeline::to_webp(&jpeg(10, 10), MediaType::Jpeg, &limits).unwrap();
    let result = report.try_append(&webp.bytes, MediaType::Webp);
    assert!(
        matches!(result, Err(PipelineError::UnsupportedMediaType)),
        "{result:?}"
    );
    let result = report.try_append(&jpeg(10, 10), MediaType::Png);
    assert!(
        matches!(result, Err(PipelineError::ContentTypeMismatch { .. })),
        "{result:?}"
    );
    assert_eq!(report.page_count(), 1, "a refused append changes nothing");
}

/// A valid one-page PDF whose page uses object number 8,000,000: within PDF's limit
/// (8,388,607), past half of it, so the report renumbers it to leave appends room.
fn pdf_with_huge_object_numbers() -> Vec<u8> {
    use lopdf::{Document, Object, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let page_id = (8_000_000, 0);
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
    doc.max_id = 8_000_000;
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

#[test]
fn a_first_pdf_with_object_numbers_near_the_limit_stays_appendable() {
    let first = pdf_with_huge_object_numbers();
    assert!(lopdf::Document::load_mem(&first).is_ok(), "a valid PDF");
    let mut report = Report::start(&first, MediaType::Pdf);
    assert_eq!(report.page_count(), 1);
    report.append(&jpeg(40, 30), MediaType::Jpeg);
    assert_eq!(report.page_count(), 2);
    report.append(&pdf(2, 100), MediaType::Pdf);
    assert_eq!(report.page_count(), 4);
    assert_qpdf_accepts(&report.bytes);
    assert_eq!(
        lopdf::Document::load_mem(&report.bytes)
            .unwrap()
            .get_pages()
            .len(),
        4
    );
}

#[test]
fn a_report_written_whole_by_an_earlier_version_is_taken_over_once() {
    // What an earlier version stored: one file, no layout known.
    let legacy = pdf(3, 100);
    let adopted = adopt_report(&legacy, &Limits::default()).unwrap();
    assert!(adopted.bytes.starts_with(&legacy));
    let mut report = Report {
        bytes: adopted.bytes.clone(),
        update: adopted,
    };
    report.append(&jpeg(40, 30), MediaType::Jpeg);
    assert_eq!(report.page_count(), 4);
    assert_eq!(page_widths(&report.bytes)[..3], [100.0, 101.0, 102.0]);
    assert_qpdf_accepts(&report.bytes);
    assert_eq!(pdfinfo_pages(&report.bytes), 4);
}

#[test]
fn a_first_pdf_with_a_cross_reference_stream_takes_appends_readers_accept() {
    // The same PDF saved with object streams and a cross-reference stream (PDF 1.5).
    let mut doc = Document::load_mem(&pdf(2, 100)).unwrap();
    let mut modern = Vec::new();
    doc.save_modern(&mut modern).unwrap();
    assert!(
        !modern.windows(5).any(|w| w == b"\nxref"),
        "no classic table"
    );
    let mut report = Report::start(&modern, MediaType::Pdf);
    report.append(&png(30, 20), MediaType::Png);
    report.append(&pdf(1, 300), MediaType::Pdf);
    assert_eq!(report.page_count(), 4);
    assert_eq!(page_widths(&report.bytes), vec![100.0, 101.0, 842.0, 300.0]);
    assert_qpdf_accepts(&report.bytes);
    assert_eq!(pdfinfo_pages(&report.bytes), 4);
}
