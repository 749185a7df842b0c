//! An upload appended to a report, and the upload starting a report: the increment is checked
//! to parse, with every page, as the whole report.
#![no_main]

mod common;

use imaging_pipeline::{MediaType, Step, append_to_report, start_report};

/// A one-page PDF, as a PDF writer makes them, to start the report the upload is appended to.
fn base() -> Vec<u8> {
    use lopdf::{Document, Object, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages = doc.new_object_id();
    let page = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    });
    doc.objects.insert(
        pages,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("the base saves");
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::metered(data, Step::Report { report_bytes: 0 }, |data, media, limits| {
        let base = start_report(&base(), MediaType::Pdf, limits).expect("the base report starts");
        let update = append_to_report(
            &base.layout,
            base.bytes.len() as u64,
            base.page_count,
            data,
            media,
            limits,
        )?;
        if update.page_count > limits.pdf.max_pages {
            return Ok(());
        }
        // The report and its increment read back with every page.
        let mut whole = base.bytes;
        whole.extend_from_slice(&update.bytes);
        let pages = imaging_pipeline::inspect(&whole, MediaType::Pdf, limits)
            .expect("an appended report parses")
            .page_count;
        assert_eq!(pages, update.page_count, "pages read back");
        let started = start_report(data, media, limits)?;
        let again = imaging_pipeline::inspect(&started.bytes, MediaType::Pdf, limits)
            .expect("a started report parses");
        assert_eq!(again.page_count, started.page_count);
        Ok(())
    });
});
