//! Property tests on mutated valid files (JPEG, PNG, WebP, PDF, HEIC, TIFF of each compression,
//! GIF): sniffing, inspection,
//! conversion and report building never panic and never allocate past the memory the limits
//! allow, whatever the bytes. Runs on stable Rust with `proptest`; `PROPTEST_CASES` raises the
//! number of cases (a few thousand by default, within CI's time).

#![allow(clippy::unwrap_used)]

mod common;

use common::{jpeg, pdf, png};
use imaging_pipeline::{
    Limits, MediaType, Step, append_to_report, inspect, memory_cost, sniff, start_report, to_webp,
};
use peak_alloc::PeakAlloc;
use proptest::prelude::*;
use std::sync::{LazyLock, Mutex};

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Small limits, so that a mutated header claiming a large image stays quick to refuse.
fn limits() -> Limits {
    Limits {
        max_pixels: 4_000_000,
        max_image_bytes: 32 * 1024 * 1024,
        max_ancillary_bytes: 1024 * 1024,
        ..Limits::default()
    }
}

/// What no run may allocate at once: the largest decoded image plus the largest inflated
/// PDF streams and slack.
const CEILING: usize = 32 * 1024 * 1024 + 32 * 1024 * 1024 + 32 * 1024 * 1024;

static SEEDS: LazyLock<Vec<(Vec<u8>, MediaType)>> = LazyLock::new(|| {
    let webp = to_webp(&png(24, 16), MediaType::Png, &Limits::default())
        .unwrap()
        .bytes;
    vec![
        (jpeg(24, 16), MediaType::Jpeg),
        (png(24, 16), MediaType::Png),
        (webp, MediaType::Webp),
        (pdf(2, 100), MediaType::Pdf),
        (imaging_fixtures::HEIC_PLAIN.to_vec(), MediaType::Heic),
        (imaging_fixtures::TIFF_G4.to_vec(), MediaType::Tiff),
        (imaging_fixtures::TIFF_G3.to_vec(), MediaType::Tiff),
        (imaging_fixtures::TIFF_LZW.to_vec(), MediaType::Tiff),
        (imaging_fixtures::TIFF_JPEG.to_vec(), MediaType::Tiff),
        (imaging_fixtures::TIFF_TILED.to_vec(), MediaType::Tiff),
        (imaging_fixtures::GIF_ANIMATED.to_vec(), MediaType::Gif),
        (imaging_fixtures::GIF_TRANSPARENT.to_vec(), MediaType::Gif),
    ]
});

/// One change to a file.
#[derive(Debug, Clone)]
enum Mutation {
    /// Sets the byte at (position modulo length) to a value.
    Set(usize, u8),
    /// Cuts the file to (position modulo length) bytes.
    Truncate(usize),
    /// Inserts bytes at (position modulo length).
    Insert(usize, Vec<u8>),
    /// Repeats a slice of the file.
    Repeat(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set(at, value)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (any::<usize>(), 1usize..64, 1usize..8)
            .prop_map(|(at, len, times)| Mutation::Repeat(at, len, times)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        let len = bytes.len();
        match mutation {
            Mutation::Set(at, value) => bytes[at % len] = *value,
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Insert(at, extra) => {
                let at = at % len;
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Repeat(at, span, times) => {
                let start = at % len;
                let end = (start + span).min(len);
                let slice = bytes[start..end].to_vec();
                for _ in 0..*times {
                    bytes.splice(end..end, slice.iter().copied());
                }
            }
        }
    }
    bytes
}

/// Every pipeline entry point on `bytes` declared as `media`; returns the peak allocation.
fn exercise(bytes: &[u8], media: MediaType) -> usize {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let limits = limits();
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    let _ = sniff(bytes);
    let _ = memory_cost(bytes, media, Step::Webp, &limits);
    let _ = inspect(bytes, media, &limits);
    if media != MediaType::Pdf {
        let _ = to_webp(bytes, media, &limits);
    }
    if media != MediaType::Webp {
        if let Ok(report) = start_report(bytes, media, &limits) {
            let _ = append_to_report(
                &report.layout,
                report.bytes.len() as u64,
                report.page_count,
                &jpeg(8, 8),
                MediaType::Jpeg,
                &limits,
            );
        }
        let base = start_report(&pdf(1, 100), MediaType::Pdf, &limits).unwrap();
        let _ = append_to_report(
            &base.layout,
            base.bytes.len() as u64,
            base.page_count,
            bytes,
            media,
            &limits,
        );
    }
    ALLOCATOR.peak_usage().saturating_sub(before)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(5000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_files_never_panic_or_pass_the_memory_ceiling(
        seed in 0usize..12,
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let (bytes, media) = &SEEDS[seed];
        let mutated = apply(bytes.clone(), &mutations);
        let peak = exercise(&mutated, *media);
        prop_assert!(peak < CEILING, "peak {} MiB", peak / (1024 * 1024));
    }
}
