//! Conversion of a workspace receipt to WebP.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::metered(data, imaging_pipeline::Step::Webp, |data, media, limits| {
        imaging_pipeline::to_webp(data, media, limits)
    });
});
