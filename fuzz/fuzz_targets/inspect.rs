//! Validation of an upload stored as sent (JPEG, PNG, WebP, PDF).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::inspect_target(data));
