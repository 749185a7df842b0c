//! Validation of an upload stored as sent (JPEG, PNG, WebP, PDF).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::metered(data, imaging_pipeline::Step::Inspect, |data, media, limits| {
        imaging_pipeline::inspect(data, media, limits)
    });
});
