//! Memory enforced while a step runs: with the counting allocator installed (as the service
//! installs it), a step that allocates more than its limit is stopped and refused, whatever the
//! input; and a page tree whose inherited values would multiply per page is written by
//! reference, so its append costs about what the file holds.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_qpdf_accepts, jpeg};
use imaging_fixtures::{pdf, pdf_inherited_values, pdfinfo_pages};
use imaging_pipeline::{
    Limits, MediaType, PipelineError, ReportUpdate, Step, append_to_report, memory_cost, meter,
    start_report,
};

#[global_allocator]
static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;

const MIB: u64 = 1 << 20;

/// `upload` appended to `report` (default limits).
fn append(
    report: &ReportUpdate,
    upload: &[u8],
    media: MediaType,
) -> Result<ReportUpdate, PipelineError> {
    let limits = Limits::default();
    append_to_report(
        &report.layout,
        report.bytes.len() as u64,
        report.page_count,
        upload,
        media,
        &limits,
    )
}

/// The whole report after `update`: `report`'s bytes, then the increment.
fn joined(report: &ReportUpdate, update: &ReportUpdate) -> Vec<u8> {
    let mut whole = report.bytes.clone();
    whole.extend_from_slice(&update.bytes);
    whole
}

#[test]
fn the_counting_allocator_is_installed_here() {
    assert!(meter::installed());
}

#[test]
fn a_step_over_its_limit_is_refused_and_one_within_it_is_not() {
    let over = meter::run(MIB, || {
        let mut held = Vec::new();
        for _ in 0..64 {
            held.push(vec![1u8; 64 * 1024]);
            meter::check()?;
        }
        Ok(held.len())
    });
    assert!(matches!(
        over,
        Err(PipelineError::TooComplex { what: "memory" })
    ));
    // Checked at the end too: a step that never calls `check` is refused all the same.
    let unchecked = meter::run(MIB, || Ok(vec![0u8; 2 * MIB as usize].len()));
    assert!(matches!(
        unchecked,
        Err(PipelineError::TooComplex { what: "memory" })
    ));
    let (len, peak) = meter::run(4 * MIB, || Ok(vec![0u8; 2 * MIB as usize].len())).unwrap();
    assert_eq!(len, 2 * MIB as usize);
    assert!(peak.0 >= 2 * MIB && peak.0 < 3 * MIB, "peak {}", peak.0);
}

#[test]
fn inherited_values_are_written_once_not_per_page() {
    let limits = Limits::default();
    let report = start_report(&jpeg(40, 30), MediaType::Jpeg, &limits).unwrap();
    // 2,000 pages inheriting a 200,000-number MediaBox and 50,000 resources: copied per page
    // this is hundreds of millions of objects.
    let upload = pdf_inherited_values(2000, 200_000);
    let reserved = memory_cost(
        &upload,
        MediaType::Pdf,
        Step::Report { report_bytes: 0 },
        &limits,
    )
    .unwrap();
    let (update, peak) = meter::run(reserved, || append(&report, &upload, MediaType::Pdf)).unwrap();
    assert_eq!(update.page_count, 2001);
    assert!(
        peak.0 <= reserved,
        "peak {} over the reservation {reserved}",
        peak.0
    );
    assert!(
        (update.bytes.len() as u64) < 3 * upload.len() as u64,
        "the increment is {} bytes for a {}-byte upload",
        update.bytes.len(),
        upload.len()
    );
    let whole = joined(&report, &update);
    assert_qpdf_accepts(&whole);
    assert_eq!(pdfinfo_pages(&whole), 2001);
    // Every page still sees the inherited box: lopdf reads the first page's MediaBox.
    let doc = lopdf::Document::load_mem(&whole).unwrap();
    let pages = doc.get_pages();
    let last = doc.get_dictionary(pages[&2001]).unwrap();
    let media_box = doc
        .dereference(last.get(b"MediaBox").unwrap())
        .unwrap()
        .1
        .as_array()
        .unwrap()
        .len();
    assert_eq!(media_box, 200_000);
}

#[test]
fn an_append_held_to_too_little_memory_is_refused_not_aborted() {
    let limits = Limits::default();
    let report = start_report(&jpeg(40, 30), MediaType::Jpeg, &limits).unwrap();
    let upload = pdf(50);
    let refused = meter::run(64 * 1024, || append(&report, &upload, MediaType::Pdf));
    assert!(matches!(
        refused,
        Err(PipelineError::TooComplex { what: "memory" })
    ));
}

#[test]
fn every_accepted_file_fits_in_what_is_reserved_for_it() {
    // The files the fuzz targets start from, and the findings they made.
    let limits = Limits::default();
    let files: Vec<(&str, Vec<u8>, MediaType)> = vec![
        (
            "damaged xref",
            imaging_fixtures::DAMAGED_XREF_PDF.to_vec(),
            MediaType::Pdf,
        ),
        ("three pages", pdf(3), MediaType::Pdf),
        ("inherited", pdf_inherited_values(6, 24), MediaType::Pdf),
        ("photo", jpeg(64, 48), MediaType::Jpeg),
        (
            "progressive",
            imaging_fixtures::PROGRESSIVE_JPEG.to_vec(),
            MediaType::Jpeg,
        ),
        ("screenshot", imaging_fixtures::png(64, 48), MediaType::Png),
    ];
    for (name, bytes, media) in files {
        for step in [Step::Inspect, Step::Report { report_bytes: 0 }] {
            let reserved = memory_cost(&bytes, media, step, &limits).unwrap();
            let report = start_report(&jpeg(8, 8), MediaType::Jpeg, &limits).unwrap();
            let ran = meter::run(reserved, || match step {
                Step::Inspect => imaging_pipeline::inspect(&bytes, media, &limits).map(|_| ()),
                _ => append(&report, &bytes, media).map(|_| ()),
            });
            // Refused or not on its own merits, never for memory.
            assert!(
                !matches!(ran, Err(PipelineError::TooComplex { what: "memory" })),
                "{name}, {step:?}: {ran:?}"
            );
            if step == Step::Inspect {
                assert!(ran.is_ok(), "{name} is accepted: {ran:?}");
            }
        }
    }
}

#[test]
fn a_png_with_two_headers_is_refused_not_decoded_at_the_size_it_hides() {
    let limits = Limits::default();
    let png = imaging_fixtures::TWO_IHDR_PNG;
    assert!(imaging_pipeline::inspect(png, MediaType::Png, &limits).is_err());
    assert!(imaging_pipeline::to_webp(png, MediaType::Png, &limits).is_err());
    assert!(start_report(png, MediaType::Png, &limits).is_err());
}

#[test]
fn a_page_the_tree_names_but_the_file_lacks_is_no_page() {
    let limits = Limits::default();
    let upload = imaging_fixtures::DANGLING_PAGE_PDF;
    // Objects 3 and 5 are pages; the third kid, 7, is no object of the file.
    let seen = imaging_pipeline::inspect(upload, MediaType::Pdf, &limits).unwrap();
    assert_eq!(seen.page_count, 2);
    let report = start_report(&jpeg(8, 8), MediaType::Jpeg, &limits).unwrap();
    let update = append(&report, upload, MediaType::Pdf).unwrap();
    let whole = joined(&report, &update);
    assert_eq!(update.page_count, 3);
    assert_eq!(pdfinfo_pages(&whole), 3);
    assert_qpdf_accepts(&whole);
}

#[test]
fn a_first_pdf_readable_only_by_scanning_is_written_anew_so_its_report_reads_back() {
    let limits = Limits::default();
    for first in [
        imaging_fixtures::UNCHAINED_PDF,
        imaging_fixtures::DAMAGED_XREF_PDF,
        imaging_fixtures::MISTYPED_TREE_PDF,
    ] {
        let Ok(report) = start_report(first, MediaType::Pdf, &limits) else {
            continue;
        };
        let read = imaging_pipeline::inspect(&report.bytes, MediaType::Pdf, &limits).unwrap();
        assert_eq!(read.page_count, report.page_count);
        // Poppler and pypdf read the same pages (qpdf warns about the fuzzed pages' own
        // content streams, which are not streams: what the file sent, not the report's
        // structure).
        assert_eq!(pdfinfo_pages(&report.bytes), report.page_count as usize);
    }
}

#[test]
fn a_jpeg_carrying_pdf_text_is_appended_and_every_reader_reads_the_report() {
    let limits = Limits::default();
    let photo = imaging_fixtures::JPEG_WITH_PDF_TEXT;
    imaging_pipeline::inspect(photo, MediaType::Jpeg, &limits).unwrap();
    for first in [jpeg(8, 8), pdf(1)] {
        let media = if first.starts_with(b"%PDF") {
            MediaType::Pdf
        } else {
            MediaType::Jpeg
        };
        let report = start_report(&first, media, &limits).unwrap();
        let update = append(&report, photo, MediaType::Jpeg).unwrap();
        let whole = joined(&report, &update);
        assert_eq!(pdfinfo_pages(&whole), 2);
        assert_qpdf_accepts(&whole);
        let read = imaging_pipeline::inspect(&whole, MediaType::Pdf, &limits).unwrap();
        assert_eq!(read.page_count, 2);
    }
}

#[test]
fn a_scanned_pdf_is_checked_and_fingerprinted_within_what_is_reserved_for_it() {
    // A page scanned at 150 dpi (A4: 1240 x 1754) as the PDF's only picture: the check takes
    // its fingerprint from the picture read in place, under the check's own estimate.
    let limits = Limits::default();
    let scan = common::jpeg_of(&imaging_fixtures::scenes::photo(1240, 1754, 3));
    let pdf = start_report(&scan, MediaType::Jpeg, &limits).unwrap().bytes;
    assert!(pdf.len() > 200_000, "{} bytes", pdf.len());
    let reserved = memory_cost(&pdf, MediaType::Pdf, Step::Inspect, &limits).unwrap();
    let (seen, peak) = meter::run(reserved, || {
        imaging_pipeline::inspect(&pdf, MediaType::Pdf, &limits)
    })
    .unwrap();
    assert!(seen.fingerprint.is_some());
    assert!(peak.0 <= reserved, "peak {} over {reserved}", peak.0);
    // The same fingerprint as the picture uploaded on its own.
    let alone = imaging_pipeline::fingerprint(&scan, MediaType::Jpeg, &limits)
        .unwrap()
        .unwrap();
    assert_eq!(seen.fingerprint.unwrap().hash, alone.hash);
}

#[test]
fn a_jpeg_checked_as_it_arrives_fits_in_what_is_reserved_for_its_check() {
    // The check reads the receiver's chunks on its own thread, under the meter the service
    // runs it in, within the inspection's estimate (see also `arriving.rs`: it frees none of
    // the chunks, which would give the meter room it never had).
    let limits = Limits::default();
    let photo = common::jpeg_of(&imaging_fixtures::scenes::photo(2400, 1800, 5));
    let start = imaging_pipeline::jpeg_start(&photo, &limits).unwrap();
    let reserved = memory_cost(&photo, MediaType::Jpeg, Step::Inspect, &limits).unwrap();
    assert_eq!(reserved, start.check_bytes());
    let arrival = std::sync::Arc::new(imaging_pipeline::Arrival::new());
    let check = {
        let arrival = arrival.clone();
        std::thread::spawn(move || {
            meter::run(reserved, || {
                imaging_pipeline::verify_jpeg_arriving(&arrival, &start)
            })
        })
    };
    for chunk in photo.chunks(16 * 1024) {
        arrival.push(bytes::Bytes::copy_from_slice(chunk));
    }
    arrival.end(true);
    let (outcome, peak) = check.join().unwrap().unwrap();
    assert!(matches!(
        outcome,
        imaging_pipeline::ArrivedCheck::Passed(Some(_))
    ));
    assert!(
        peak.0 > 0 && peak.0 <= reserved,
        "peak {} of {reserved}",
        peak.0
    );
}
