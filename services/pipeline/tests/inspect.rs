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
    // Camera and scanner files from encoders this project did not write.
    assert_eq!(
        sniff(&imaging_fixtures::HEIC_ROTATED[..16]),
        Some(MediaType::Heic)
    );
    assert_eq!(
        sniff(&imaging_fixtures::HEIC_PLAIN[..16]),
        Some(MediaType::Heic)
    );
    assert_eq!(
        sniff(&imaging_fixtures::TIFF_G4[..16]),
        Some(MediaType::Tiff)
    );
    assert_eq!(
        sniff(&imaging_fixtures::TIFF_JPEG[..16]),
        Some(MediaType::Tiff)
    );
    assert_eq!(
        sniff(&imaging_fixtures::GIF_ANIMATED[..16]),
        Some(MediaType::Gif)
    );
    assert_eq!(sniff(b"BM\x36\0\x01\0\0\0\0\0\x36\0\0\0\x28\0"), None);
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
    assert!(seen.fingerprint.is_some(), "a JPEG has a fingerprint");
    assert_eq!(
        seen,
        Inspected {
            media: MediaType::Jpeg,
            width: 64,
            height: 48,
            page_count: 1,
            converted: None,
            fingerprint: seen.fingerprint.clone(),
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
fn a_photo_checked_and_fingerprinted_in_one_pass_is_refused_when_damaged() {
    // The check's grey decode at the fingerprint's scale (1/8 from 2,048 px wide, 1/4, 1/2, and
    // whole under 512 px) is the proof the JPEG decodes, and gives the fingerprint.
    for (width, height) in [(2400, 1600), (1100, 800), (600, 800), (360, 480)] {
        checked_in_one_pass(width, height);
    }
}

fn checked_in_one_pass(width: u32, height: u32) {
    let limits = Limits::default();
    let full = jpeg(width, height);
    let seen = inspect(&full, MediaType::Jpeg, &limits).unwrap();
    assert_eq!(
        seen.fingerprint,
        imaging_pipeline::fingerprint(&full, MediaType::Jpeg, &limits).unwrap(),
        "the same fingerprint as a pass of its own"
    );
    assert!(seen.fingerprint.is_some());
    for damaged in [
        full[..full.len() / 2].to_vec(),
        full[..full.len() - 2].to_vec(),
        {
            // Entropy-coded data overwritten in the middle.
            let mut bytes = full.clone();
            let middle = bytes.len() / 2;
            bytes[middle..middle + 64].fill(0xFF);
            bytes
        },
    ] {
        let result = inspect(&damaged, MediaType::Jpeg, &limits);
        assert!(
            matches!(result, Err(PipelineError::Corrupt(_))),
            "{width}x{height}: {result:?}"
        );
    }
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
            page_count: 3,
            converted: None,
            fingerprint: None,
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

/// A PNG with this IHDR whose image data is every row (of every Adam7 pass when interlaced)
/// with filter type 0 and zero samples, plus `extra` bytes (negative: fewer).
fn hand_made_png(
    width: u32,
    height: u32,
    depth: u8,
    colour: u8,
    interlace: u8,
    extra: i64,
) -> Vec<u8> {
    use imaging_fixtures::{png_chunk, zlib};
    let channels: u64 = match colour {
        2 => 3,
        4 => 2,
        6 => 4,
        _ => 1,
    };
    let row = |columns: u64| 1 + (columns * channels * u64::from(depth)).div_ceil(8);
    let (w, h) = (u64::from(width), u64::from(height));
    let passes: Vec<(u64, u64)> = if interlace == 0 {
        vec![(h, row(w))]
    } else {
        [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ]
        .iter()
        .map(|&(x0, y0, dx, dy): &(u64, u64, u64, u64)| {
            let columns = w.saturating_sub(x0).div_ceil(dx);
            let rows = h.saturating_sub(y0).div_ceil(dy);
            if columns == 0 {
                (0, 0)
            } else {
                (rows, row(columns))
            }
        })
        .collect()
    };
    let total: u64 = passes.iter().map(|(rows, bytes)| rows * bytes).sum();
    let length = usize::try_from(total as i64 + extra).unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, colour, 0, 0, interlace]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    if colour == 3 {
        png.extend(png_chunk(b"PLTE", &[0, 0, 0, 255, 255, 255]));
    }
    png.extend(png_chunk(b"IDAT", &zlib(&vec![0u8; length])));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn pngs_are_checked_row_by_row_without_building_the_image() {
    let limits = Limits::default();
    // Layouts a real decoder agrees with: odd sizes, sub-byte samples, palettes, 16-bit, Adam7.
    for (width, height, depth, colour, interlace) in [
        (13, 7, 1, 0, 0),
        (13, 7, 4, 3, 1),
        (3, 2, 16, 6, 1),
        (1, 1, 8, 2, 1),
        (9, 17, 2, 0, 1),
        (100, 50, 8, 4, 0),
    ] {
        let good = hand_made_png(width, height, depth, colour, interlace, 0);
        assert!(
            image::load_from_memory(&good).is_ok(),
            "the image crate decodes the {width}x{height} test file"
        );
        let seen = inspect(&good, MediaType::Png, &limits).unwrap();
        assert_eq!((seen.width, seen.height), (width, height));
        for extra in [-1, 1] {
            let bad = hand_made_png(width, height, depth, colour, interlace, extra);
            let result = inspect(&bad, MediaType::Png, &limits);
            assert!(
                matches!(result, Err(PipelineError::Corrupt(_))),
                "{width}x{height} depth {depth} colour {colour} interlace {interlace}, \
                 {extra:+} bytes: {result:?}"
            );
        }
    }
    let good = png(64, 48);
    assert!(inspect(&good, MediaType::Png, &limits).is_ok());
    // A flipped bit anywhere after the signature: a CRC, a length or the data is wrong.
    for at in (8..good.len()).step_by(7) {
        let mut flipped = good.clone();
        flipped[at] ^= 0x10;
        assert!(
            inspect(&flipped, MediaType::Png, &limits).is_err(),
            "bit flipped at {at} of {}",
            good.len()
        );
    }
    // Cut anywhere: refused.
    for cut in (8..good.len()).step_by(11) {
        assert!(
            inspect(&good[..cut], MediaType::Png, &limits).is_err(),
            "cut at {cut}"
        );
    }
}

/// Every mutation of a JPEG that the full decoder (the validation before the entropy-decode
/// check) refuses is refused by `inspect` too: the cheaper check is never more lenient, and it
/// catches far more damage.
#[test]
fn the_entropy_decode_check_refuses_whatever_a_full_decode_refuses() {
    let limits = Limits::default();
    let mut files = vec![
        imaging_fixtures::scenes::photo_jpeg(320, 240, 5, 90),
        common::jpeg_of(&image::RgbImage::from_fn(97, 61, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 4) as u8, ((x ^ y) * 5) as u8])
        })),
    ];
    // A progressive file, from libjpeg itself, is not available here; a grey one is.
    let mut grey = Vec::new();
    image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(80, 50, |x, y| {
        image::Luma([((x * y) % 251) as u8])
    }))
    .write_to(
        &mut std::io::Cursor::new(&mut grey),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    files.push(grey);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % below as u64).unwrap()
    };
    let (mut refused_by_both, mut refused_now, mut cases) = (0, 0, 0);
    for good in &files {
        let (data, eoi) = scan_data(good);
        for _ in 0..700 {
            let mut bad = good.clone();
            match next(4) {
                // Flip a few bits in the entropy-coded data.
                0 | 1 => {
                    for _ in 0..=next(3) {
                        let at = data + next(eoi - data);
                        bad[at] ^= 1 << next(8);
                    }
                }
                // Cut the scan and put the end marker back.
                2 => {
                    bad.truncate(data + next(eoi - data));
                    bad.extend_from_slice(&[0xFF, 0xD9]);
                }
                // Overwrite a run of the scan with one byte value.
                _ => {
                    let at = data + next(eoi - data);
                    let value = u8::try_from(next(256)).unwrap();
                    let end = (at + 1 + next(32)).min(eoi);
                    bad[at..end].fill(value);
                }
            }
            cases += 1;
            let before = imaging_pipeline::webp_stages::decode(&bad, MediaType::Jpeg, &limits);
            let now = inspect(&bad, MediaType::Jpeg, &limits);
            refused_now += usize::from(now.is_err());
            if before.is_err() {
                refused_by_both += 1;
                assert!(
                    now.is_err(),
                    "case {cases}: the full decode refused, inspect passed"
                );
            }
        }
    }
    // The full decode fills damaged data with grey and so refused almost none of these (1 of
    // 2,100 when this was written); the entropy-decode check refuses about a third.
    assert!(
        refused_now >= 500 && refused_now > refused_by_both,
        "{cases} mutations: full decode refused {refused_by_both}, inspect {refused_now}"
    );
}

/// Likewise for PNGs: whatever the full decode refuses, the chunk-and-rows check refuses.
#[test]
fn the_png_check_refuses_whatever_a_full_decode_refuses() {
    let limits = Limits::default();
    let files = [
        png(64, 48),
        hand_made_png(37, 21, 4, 3, 1, 0),
        hand_made_png(30, 9, 16, 6, 0, 0),
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % below as u64).unwrap()
    };
    let (mut refused_before, mut refused_now) = (0, 0);
    for good in &files {
        for case in 0..500 {
            let mut bad = good.clone();
            match next(3) {
                0 => {
                    let at = 8 + next(bad.len() - 8);
                    bad[at] ^= 1 << next(8);
                }
                1 => bad.truncate(8 + next(bad.len() - 8)),
                _ => {
                    let at = 8 + next(bad.len() - 8);
                    let end = (at + 1 + next(16)).min(bad.len());
                    bad[at..end].fill(u8::try_from(next(256)).unwrap());
                }
            }
            let before = image::load_from_memory_with_format(&bad, image::ImageFormat::Png);
            let now = inspect(&bad, MediaType::Png, &limits);
            refused_now += usize::from(now.is_err());
            if before.is_err() {
                refused_before += 1;
                assert!(
                    now.is_err(),
                    "case {case}: the full decode refused, inspect passed"
                );
            }
        }
    }
    assert!(refused_before > 0 && refused_now >= refused_before);
}
