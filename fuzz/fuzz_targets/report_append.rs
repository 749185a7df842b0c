//! An upload appended to a report, and the upload starting a report: the increment is checked
//! to parse, with every page, as the whole report.
#![no_main]

mod common;

use imaging_pipeline::{MediaType, Step, append_to_report, start_report};

/// A one-page PDF to start the report the fuzzed upload is appended to.
const BASE: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\nxref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000058 00000 n \n0000000115 00000 n \ntrailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n186\n%%EOF\n";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::metered(data, Step::Report { report_bytes: 0 }, |data, media, limits| {
        let base = start_report(BASE, MediaType::Pdf, limits).expect("the base report starts");
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
