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

/// Offsets of the first scan's entropy-coded data and of the end-of-image marker.
fn scan_data(bytes: &[u8]) -> (usize, usize) {
    let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let header = usize::from(u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]));
    (sos + 2 + header, bytes.len() - 2)
}

#[test]
fn damaged_jpegs_are_refused_without_a_full_decode() {
    let limits = Limits::default();
    let photo = imaging_fixtures::scenes::photo(640, 480, 3);
    let good = common::jpeg_of(&photo);
    assert!(inspect(&good, MediaType::Jpeg, &limits).is_ok());
    let (data, eoi) = scan_data(&good);
    let refused = |bytes: &[u8], what: &str| {
        let result = inspect(bytes, MediaType::Jpeg, &limits);
        assert!(
            matches!(result, Err(PipelineError::Corrupt(_))),
            "{what}: {result:?}"
        );
    };
    for sixteenth in 1..16 {
        let cut = data + (eoi - data) * sixteenth / 16;
        refused(&good[..cut], &format!("cut at {sixteenth}/16"));
        // The end-of-image marker put back: only decoding the scan shows what is missing.
        let mut resealed = good[..cut].to_vec();
        resealed.extend_from_slice(&[0xFF, 0xD9]);
        refused(&resealed, &format!("cut at {sixteenth}/16, EOI appended"));
    }
    // A run of 1-bits (stuffed 0xFF 0x00 pairs) is no valid Huffman code in any table.
    let mut scribbled = good.clone();
    let middle = data + (eoi - data) / 2;
    for pair in scribbled[middle..middle + 64].chunks_exact_mut(2) {
        pair.copy_from_slice(&[0xFF, 0x00]);
    }
    refused(&scribbled, "invalid Huffman codes");
    // A scan with no data at all.
    let mut empty = good[..data].to_vec();
    empty.extend_from_slice(&[0xFF, 0xD9]);
    refused(&empty, "empty scan");
    // Extra bytes after the end-of-image marker do not matter.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"trailing bytes");
    assert!(inspect(&trailing, MediaType::Jpeg, &limits).is_ok());
}
