//! Camera and scanner formats over real gRPC, on the embedded default and on S3 + Redis: what is
//! stored (read back from storage and checked with readers this project did not write), what the
//! answer reports, and what the quota charges.

use crate::helpers::{Stack, TestApp, expense, reason, spawn_app, target};
use imaging_e2e::fixtures::{
    GIF_ANIMATED, HEIC_ROTATED, TIFF_G4, TIFF_JPEG, assert_qpdf_accepts, jpeg, pdfinfo_pages,
    pillow_reads,
};
use imaging_proto::v1::TargetKind;
use sha2::{Digest, Sha256};

/// A HEIC receipt is stored as a JPEG, a TIFF invoice as a PDF, a GIF expense entry as a PNG;
/// each answer reports the stored form, the bytes in storage are that form, and the quota
/// charges their size.
async fn each_format_is_stored_in_the_form_viewers_open(app: &TestApp) {
    let token = app.token("u1", "w1", &[], &[]);
    app.register_target(target(TargetKind::Invoice, "inv-1"), "w1", "u1")
        .await;
    app.register_target(target(TargetKind::ExpenseEntry, "e-1"), "w1", "u1")
        .await;
    let mut charged = 0;

    let stored = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/heic",
            HEIC_ROTATED,
        )
        .await
        .unwrap();
    assert_eq!(stored.content_type, "image/jpeg");
    assert_eq!(
        (stored.width, stored.height, stored.page_count),
        (480, 640, 1)
    );
    assert!(stored.path.ends_with(".jpg"), "{}", stored.path);
    let bytes = app.object(&stored.path).await;
    assert_eq!(stored.size_bytes, bytes.len() as u64);
    assert_eq!(stored.sha256, Sha256::digest(&bytes).to_vec());
    assert_eq!(pillow_reads(&bytes), "JPEG 480 640");
    charged += bytes.len() as u64;
    assert_eq!(app.used("w1").await, charged);

    let stored = app
        .upload(
            &token,
            target(TargetKind::Invoice, "inv-1"),
            "image/tif",
            TIFF_G4,
        )
        .await
        .unwrap();
    assert_eq!(stored.content_type, "application/pdf");
    assert_eq!(stored.page_count, 3);
    assert!(stored.path.ends_with(".pdf"), "{}", stored.path);
    let bytes = app.object(&stored.path).await;
    assert_eq!(stored.size_bytes, bytes.len() as u64);
    assert_qpdf_accepts(&bytes);
    assert_eq!(pdfinfo_pages(&bytes), 3);
    charged += bytes.len() as u64;
    assert_eq!(app.used("w1").await, charged);

    let stored = app
        .upload(
            &token,
            target(TargetKind::ExpenseEntry, "e-1"),
            "image/gif",
            GIF_ANIMATED,
        )
        .await
        .unwrap();
    assert_eq!(stored.content_type, "image/png");
    assert_eq!((stored.width, stored.height), (200, 260));
    let bytes = app.object(&stored.path).await;
    assert_eq!(pillow_reads(&bytes), "PNG 200 260");
    charged += bytes.len() as u64;
    assert_eq!(app.used("w1").await, charged);

    // Served as stored, with the stored type.
    let info = app
        .get_image(&token, target(TargetKind::Invoice, "inv-1"))
        .await
        .unwrap();
    let (status, body) = app.fetch(&info.url).await;
    assert_eq!(status, 200);
    assert_eq!(pdfinfo_pages(&body), 3);
}

/// A report takes TIFF pages and HEIC and GIF pages after a JPEG.
async fn reports_take_the_new_formats_as_pages(app: &TestApp) {
    let token = app.token("u1", "w1", &[], &[]);
    app.register_target(target(TargetKind::Report, "r-1"), "w1", "u1")
        .await;
    let report = target(TargetKind::Report, "r-1");
    let first = app
        .upload(&token, report.clone(), "image/jpeg", &jpeg(60, 40))
        .await
        .unwrap();
    assert_eq!(first.page_count, 1);
    let mut last = first;
    for (media, bytes, pages) in [
        ("image/tiff", TIFF_JPEG, 3),
        ("image/heif", HEIC_ROTATED, 4),
        ("image/gif", GIF_ANIMATED, 5),
    ] {
        last = app
            .upload(&token, report.clone(), media, bytes)
            .await
            .unwrap();
        assert_eq!(last.page_count, pages, "{media}");
    }
    let bytes = app.object(&last.path).await;
    assert_qpdf_accepts(&bytes);
    assert_eq!(pdfinfo_pages(&bytes), 5);
    assert_eq!(app.used("w1").await, bytes.len() as u64);
}

/// The workspace route converts HEIC to WebP like any photo.
async fn a_workspace_heic_becomes_webp(app: &TestApp) {
    app.register_workspace("w2", 0).await;
    let token = app.token("u2", "w2", &["staff"], &["financial"]);
    app.register_target(expense("w2", "x-1"), "w2", "u2").await;
    let stored = app
        .upload(&token, expense("w2", "x-1"), "image/heic", HEIC_ROTATED)
        .await
        .unwrap();
    assert_eq!(stored.content_type, "image/webp");
    assert_eq!((stored.width, stored.height), (480, 640));
    let bytes = app.object(&stored.path).await;
    assert_eq!(pillow_reads(&bytes), "WEBP 480 640");
    assert_eq!(app.used("w2").await, bytes.len() as u64);
}

/// Bytes that are not what the declared type says, and a multi-page TIFF for a one-image
/// target, are refused with their reasons, and nothing is stored or charged.
async fn mismatches_and_unsupported_shapes_are_refused(app: &TestApp) {
    let token = app.token("u1", "w1", &[], &[]);
    let refused = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/heic",
            &jpeg(20, 20),
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "CONTENT_TYPE_MISMATCH");
    let refused = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/png",
            GIF_ANIMATED,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "CONTENT_TYPE_MISMATCH");
    app.register_workspace("w3", 0).await;
    let staff = app.token("u3", "w3", &["staff"], &["financial"]);
    app.register_target(expense("w3", "x-1"), "w3", "u3").await;
    let refused = app
        .upload(&staff, expense("w3", "x-1"), "image/tiff", TIFF_G4)
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "UNSUPPORTED_MEDIA_TYPE");
    assert!(refused.message().contains("TIFF"), "{}", refused.message());
    assert!(app.objects().await.is_empty());
    assert_eq!(app.used("w1").await, 0);
    assert_eq!(app.used("w3").await, 0);
}

async fn embedded() -> TestApp {
    spawn_app(Stack::Embedded).await
}

async fn real() -> TestApp {
    spawn_app(Stack::Real).await
}

mod on_embedded {
    contract!(super::embedded =>
        each_format_is_stored_in_the_form_viewers_open,
        reports_take_the_new_formats_as_pages,
        a_workspace_heic_becomes_webp,
        mismatches_and_unsupported_shapes_are_refused,
    );
}

mod on_s3_and_redis {
    contract!(super::real =>
        each_format_is_stored_in_the_form_viewers_open,
        reports_take_the_new_formats_as_pages,
        a_workspace_heic_becomes_webp,
        mismatches_and_unsupported_shapes_are_refused,
    );
}
