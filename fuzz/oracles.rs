//! What each fuzz target checks of an input, shared by the targets (`fuzz_targets/`) and the
//! regression test that runs every past finding on stable Rust
//! (`services/pipeline/tests/regressions.rs`). The process must count its allocations with
//! `imaging_pipeline::MeteredAlloc`.

use imaging_pipeline::{
    Limits, MediaType, PipelineError, Step, append_to_report, estimate, inspect, meter,
    start_report, to_webp,
};

/// Runs `work` on `data` (sniffed) under the memory `step` reserves for it, as the service
/// does. Refusals are fine, unless the meter refused a file the step accepts unmetered.
pub fn metered<T>(
    data: &[u8],
    step: Step,
    work: impl Fn(&[u8], MediaType, &Limits) -> Result<T, PipelineError>,
) {
    let limits = Limits::default();
    let Some(media) = imaging_pipeline::sniff(data) else {
        return;
    };
    let Ok(reserved) = estimate(data, media, step, &limits) else {
        return;
    };
    if let Err(PipelineError::TooComplex { what: "memory" }) =
        meter::run(reserved.bytes, || work(data, media, &limits))
        && let Ok((_, peak)) = meter::run(u64::MAX, || work(data, media, &limits))
    {
        panic!(
            "a {media:?} file the step accepts held {} bytes, more than the {} reserved for it",
            peak.0, reserved.bytes
        );
    }
}

/// Validation of an upload stored as sent (JPEG, PNG, WebP, PDF).
pub fn inspect_target(data: &[u8]) {
    metered(data, Step::Inspect, inspect);
}

/// Conversion of a workspace receipt to WebP.
pub fn webp_target(data: &[u8]) {
    metered(data, Step::Webp, to_webp);
}

/// An upload appended to a report, and the upload starting a report: what is stored reads back
/// through the same checks as an upload, with every page.
pub fn report_append_target(data: &[u8]) {
    metered(data, Step::Report { report_bytes: 0 }, report_append);
}

fn report_append(data: &[u8], media: MediaType, limits: &Limits) -> Result<(), PipelineError> {
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
    let mut whole = base.bytes;
    whole.extend_from_slice(&update.bytes);
    let pages = inspect(&whole, MediaType::Pdf, limits)
        .expect("an appended report parses")
        .page_count;
    assert_eq!(pages, update.page_count, "pages read back");
    let started = start_report(data, media, limits)?;
    let again = inspect(&started.bytes, MediaType::Pdf, limits).expect("a started report parses");
    assert_eq!(again.page_count, started.page_count);
    Ok(())
}

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
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 },
        ),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("the base saves");
    out
}
