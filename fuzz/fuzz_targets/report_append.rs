//! An upload appended to a report, and the upload starting a report: the increment is checked
//! to parse, with every page, as the whole report.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::report_append_target(data));
