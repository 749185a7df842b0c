//! Conversion of a workspace receipt to WebP.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::webp_target(data));
