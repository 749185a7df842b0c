//! Files built to exhaust memory are refused before the memory is spent. This test binary
//! counts every allocation (a peak-tracking global allocator) and asserts, for each bomb, the
//! refusal and the peak memory the refusal took; and that a real conversion stays within a
//! small multiple of what it produces.

#![allow(clippy::unwrap_used)]

mod common;

use common::{png, png_bomb};
use imaging_fixtures::{
    pdf_huge_array, pdf_inflation_bomb, pdf_tiny_objects_bomb, png_with_profile,
    sixteen_bit_rgba_png,
};
use imaging_pipeline::{Limits, MediaType, PipelineError, Step, inspect, memory_cost, to_webp};
use peak_alloc::PeakAlloc;
use std::sync::Mutex;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Peaks are process-wide: the tests run one at a time, each from its first line (building a
/// bomb allocates too, and would count in another test's peak).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the whole test alone in the process.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const MIB: usize = 1024 * 1024;

/// Runs `work` and returns its result and the most memory it had allocated at once, over what
/// was allocated before it started.
/// Call it with [`serial`] held.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    let result = work();
    (result, ALLOCATOR.peak_usage().saturating_sub(before))
}

fn too_complex<T: std::fmt::Debug>(result: Result<T, PipelineError>) -> &'static str {
    match result {
        Err(PipelineError::TooComplex { what }) => what,
        other => panic!("expected a refusal as too complex, got {other:?}"),
    }
}

#[test]
fn object_streams_that_would_inflate_to_gigabytes_are_refused_in_a_few_mebibytes() {
    let _serial = serial();
    let bomb = pdf_inflation_bomb();
    assert!(bomb.len() < 10 * MIB, "{} bytes", bomb.len());
    let (result, peak) = peak_of(|| inspect(&bomb, MediaType::Pdf, &Limits::default()));
    assert_eq!(too_complex(result), "PDF inflated streams");
    assert!(peak < 40 * MIB, "peak {} MiB", peak / MIB);
}

#[test]
fn an_object_stream_of_millions_of_tiny_objects_is_refused_before_parsing() {
    let _serial = serial();
    let bomb = pdf_tiny_objects_bomb();
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let (result, peak) = peak_of(|| inspect(&bomb, MediaType::Pdf, &Limits::default()));
    let what = too_complex(result);
    assert!(what == "PDF objects" || what == "PDF tokens", "{what}");
    assert!(peak < 40 * MIB, "peak {} MiB", peak / MIB);
}

#[test]
fn a_plain_pdf_of_one_huge_array_is_refused_without_parsing_it() {
    let _serial = serial();
    let bomb = pdf_huge_array();
    let (result, peak) = peak_of(|| inspect(&bomb, MediaType::Pdf, &Limits::default()));
    assert_eq!(too_complex(result), "PDF tokens");
    assert!(peak < 4 * MIB, "peak {} MiB", peak / MIB);
}

#[test]
fn a_png_whose_icc_profile_inflates_to_hundreds_of_megabytes_is_refused() {
    let _serial = serial();
    let bomb = png_with_profile(128 * MIB);
    assert!(bomb.len() < MIB, "{} bytes", bomb.len());
    let (result, peak) = peak_of(|| inspect(&bomb, MediaType::Png, &Limits::default()));
    assert_eq!(too_complex(result), "PNG metadata");
    assert!(peak < 2 * MIB, "peak {} KiB", peak / 1024);
    assert!(inspect(&png_with_profile(1000), MediaType::Png, &Limits::default()).is_ok());
}

#[test]
fn a_sixteen_bit_rgba_png_over_the_decoded_bytes_limit_is_refused_from_its_header() {
    let _serial = serial();
    let bomb = sixteen_bit_rgba_png(7071);
    let (result, peak) = peak_of(|| to_webp(&bomb, MediaType::Png, &Limits::default()));
    assert_eq!(too_complex(result), "decoded image");
    assert!(peak < MIB, "peak {} KiB", peak / 1024);
    let (result, _) = peak_of(png_bomb);
    let (refused, peak) = peak_of(|| inspect(&result, MediaType::Png, &Limits::default()));
    assert!(matches!(refused, Err(PipelineError::TooManyPixels { .. })));
    assert!(peak < MIB);
}

#[test]
fn a_real_conversion_stays_within_a_small_multiple_of_its_image() {
    let _serial = serial();
    let photo = png(2000, 1500);
    let decoded = 2000 * 1500 * 3;
    let limits = Limits::default();
    let estimate = memory_cost(&photo, MediaType::Png, Step::Webp, &limits).unwrap();
    let (webp, peak) = peak_of(|| to_webp(&photo, MediaType::Png, &limits).unwrap());
    assert_eq!((webp.width, webp.height), (2000, 1500));
    assert!(
        peak < 4 * decoded,
        "peak {} MiB for a {} MiB image",
        peak / MIB,
        decoded / MIB
    );
    assert!(
        peak as u64 <= estimate,
        "the budget estimate ({} MiB) covers the peak ({} MiB)",
        estimate / MIB as u64,
        peak / MIB
    );
}

#[test]
fn an_estimate_spares_only_its_own_buffer_a_second_pdf_scan() {
    let _serial = serial();
    let limits = Limits::default();
    let good = imaging_fixtures::pdf(3);
    let estimate =
        imaging_pipeline::estimate(&good, MediaType::Pdf, Step::Inspect, &limits).unwrap();
    assert_eq!(
        imaging_pipeline::inspect_estimated(&good, MediaType::Pdf, &limits, &estimate).unwrap(),
        inspect(&good, MediaType::Pdf, &limits).unwrap()
    );
    // Another buffer, even one with the same length, is scanned: the bomb is refused.
    let bomb = imaging_fixtures::pdf_inflation_bomb();
    let result = imaging_pipeline::inspect_estimated(&bomb, MediaType::Pdf, &limits, &estimate);
    assert!(
        matches!(result, Err(PipelineError::TooComplex { .. })),
        "{result:?}"
    );
    let copy = good.clone();
    let stricter = Limits {
        pdf: imaging_pipeline::PdfLimits {
            max_pages: 2,
            ..limits.pdf
        },
        ..limits
    };
    let result = imaging_pipeline::inspect_estimated(&copy, MediaType::Pdf, &stricter, &estimate);
    assert!(
        matches!(result, Err(PipelineError::TooComplex { .. })),
        "{result:?}"
    );
}
