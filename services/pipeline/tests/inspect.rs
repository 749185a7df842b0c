//! Validation of uploads as the ingest service sees it: type checks, sizes, refusals.

#![allow(clippy::unwrap_used)]

mod common;

use common::{OWNER_PASSWORD_PDF, USER_PASSWORD_PDF, jpeg, pdf, png, png_bomb};
use imaging_pipeline::{Inspected, Limits, MediaType, PipelineError, inspect, sniff, to_webp};

#[test]
fn files_made_by_real_encoders_are_sniffed_from_their_first_16_bytes() {
    assert_eq!(sniff(&jpeg(8, 8)[..16]), Some(MediaType::Jpeg));
    assert_eq!(sniff(&png(8, 8)[..16]), Some(MediaType::Png));
    assert_eq!(sniff(&pdf(1, 100)[..16]), Some(MediaType::Pdf));
    let webp = to_webp(&png(8, 8), MediaType::Png, &Limits::default()).unwrap();
    assert_eq!(sniff(&webp.bytes[..16]), Some(MediaType::Webp));
    assert_eq!(sniff(b"GIF89a\x01\0\x01\0\0\0\0\0\0\0"), None);
    assert_eq!(sniff(b"just some text, no magic"), None);
}

#[test]
fn a_declared_type_that_does_not_match_the_bytes_is_refused() {
    let limits = Limits::default();
    let result = inspect(&png(4, 4), MediaType::Jpeg, &limits);
    assert!(
        matches!(
            result,
            Err(PipelineError::ContentTypeMismatch {
                declared: MediaType::Jpeg,
                detected: Some(MediaType::Png)
            })
        ),
        "{result:?}"
    );
    let result = inspect(b"hello world, not a file", MediaType::Pdf, &limits);
    assert!(
        matches!(
            result,
            Err(PipelineError::ContentTypeMismatch {
                declared: MediaType::Pdf,
                detected: None
            })
        ),
        "{result:?}"
    );
}

#[test]
fn a_jpeg_declared_as_image_jpg_is_accepted() {
    let declared = MediaType::from_declared("image/jpg").unwrap();
    let seen = inspect(&jpeg(64, 48), declared, &Limits::default()).unwrap();
    assert_eq!(
        seen,
        Inspected {
            media: MediaType::Jpeg,
            width: 64,
            height: 48,
            page_count: 1
        }
    );
}

#[test]
fn a_truncated_jpeg_or_png_is_corrupt() {
    let limits = Limits::default();
    let full = jpeg(300, 200);
    let result = inspect(&full[..full.len() / 2], MediaType::Jpeg, &limits);
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "{result:?}"
    );
    let result = inspect(&full[..full.len() - 2], MediaType::Jpeg, &limits);
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "missing EOI: {result:?}"
    );
    let full = png(300, 200);
    let result = inspect(&full[..full.len() - 40], MediaType::Png, &limits);
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "{result:?}"
    );
}

#[test]
fn a_png_claiming_ten_gigapixels_is_refused_from_its_header() {
    let bomb = png_bomb();
    assert!(bomb.len() < 70, "{} bytes", bomb.len());
    let limits = Limits::default();
    let result = inspect(&bomb, MediaType::Png, &limits);
    assert!(
        matches!(
            result,
            Err(PipelineError::TooManyPixels {
                width: 100_000,
                height: 100_000
            })
        ),
        "{result:?}"
    );
    let result = to_webp(&bomb, MediaType::Png, &limits);
    assert!(
        matches!(result, Err(PipelineError::TooManyPixels { .. })),
        "{result:?}"
    );
}

#[test]
fn the_pixel_cap_is_the_configured_one() {
    let limits = Limits {
        max_pixels: 100 * 100,
        ..Limits::default()
    };
    assert!(inspect(&jpeg(100, 100), MediaType::Jpeg, &limits).is_ok());
    let result = inspect(&jpeg(101, 100), MediaType::Jpeg, &limits);
    assert!(
        matches!(
            result,
            Err(PipelineError::TooManyPixels {
                width: 101,
                height: 100
            })
        ),
        "{result:?}"
    );
}

#[test]
fn encrypted_pdfs_are_refused_with_or_without_a_user_password() {
    let limits = Limits::default();
    let result = inspect(USER_PASSWORD_PDF, MediaType::Pdf, &limits);
    assert!(
        matches!(result, Err(PipelineError::EncryptedPdf)),
        "user password: {result:?}"
    );
    let result = inspect(OWNER_PASSWORD_PDF, MediaType::Pdf, &limits);
    assert!(
        matches!(result, Err(PipelineError::EncryptedPdf)),
        "owner password only: {result:?}"
    );
}

#[test]
fn a_valid_pdf_reports_its_pages_and_a_broken_one_is_corrupt() {
    let limits = Limits::default();
    let seen = inspect(&pdf(3, 100), MediaType::Pdf, &limits).unwrap();
    assert_eq!(
        seen,
        Inspected {
            media: MediaType::Pdf,
            width: 0,
            height: 0,
            page_count: 3
        }
    );
    let result = inspect(
        b"%PDF-1.7\nthis is not a PDF body\n",
        MediaType::Pdf,
        &limits,
    );
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "{result:?}"
    );
    let result = inspect(&pdf(0, 100), MediaType::Pdf, &limits);
    assert!(
        matches!(result, Err(PipelineError::Corrupt(_))),
        "no pages: {result:?}"
    );
}
