//! Every target kind's happy path over real gRPC, on the real stack (S3 + Redis) unless noted.

use crate::helpers::{Stack, expense, reason, spawn_app, target};
use imaging_e2e::fixtures::{jpeg, pdf, pdf_pages, png};
use imaging_proto::v1::TargetKind;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_loose_receipt_is_stored_byte_for_byte_and_served_through_its_url() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(640, 480);
    let stored = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/jpeg",
            &bytes,
        )
        .await
        .unwrap();

    assert_eq!(stored.image_id.len(), 32, "the server makes the image ID");
    assert_eq!((stored.width, stored.height), (640, 480));
    assert_eq!(stored.size_bytes, bytes.len() as u64);
    assert_eq!(stored.content_type, "image/jpeg");
    assert_eq!(stored.sha256, Sha256::digest(&bytes).to_vec());
    assert!(
        stored
            .path
            .starts_with(&format!("ws/w1/receipts/{}/", stored.image_id)),
        "{}",
        stored.path
    );
    assert_eq!(app.object(&stored.path).await, bytes);
    assert_eq!(app.used("w1").await, bytes.len() as u64);

    let info = app
        .get_image(&token, target(TargetKind::Receipt, &stored.image_id))
        .await
        .unwrap();
    assert_eq!(info.url_expires_in_seconds, 900);
    let (status, body) = app.fetch(&info.url).await;
    assert_eq!(status, 200);
    assert_eq!(body, bytes, "the expiring URL serves the exact bytes");
}

#[tokio::test]
async fn with_checksummed_puts_receipts_converted_and_kept_are_stored_byte_for_byte() {
    // `storage.payload = "checksum"`: unsigned bodies, each checked by the S3 server against
    // the CRC32C the service took as the bytes arrived (or of the WebP it made).
    let app = crate::helpers::spawn_app_with(Stack::Real, |settings| {
        if let ingest_service::configuration::StorageSettings::S3 { payload, .. } =
            &mut settings.storage
        {
            *payload = ingest_service::configuration::PayloadCheck::Checksum;
        }
    })
    .await;
    assert!(app.backends.store.checks_crc32c());
    app.register_workspace("w1", 0).await;
    app.register_target(expense("w1", "e-crc"), "w1", "u1")
        .await;
    let token = app.token("u1", "w1", &[], &[]);
    let scanned = pdf(3);
    let kept = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "application/pdf",
            &scanned,
        )
        .await
        .unwrap();
    assert_eq!(app.object(&kept.path).await, scanned);
    assert_eq!(kept.sha256, Sha256::digest(&scanned).to_vec());

    let staff = app.token("u2", "w1", &["staff"], &["financial"]);
    let photo = jpeg(1200, 900);
    let converted = app
        .upload(&staff, expense("w1", "e-crc"), "image/jpeg", &photo)
        .await
        .unwrap();
    assert_eq!(converted.content_type, "image/webp");
    let webp = app.object(&converted.path).await;
    assert_eq!(webp.len() as u64, converted.size_bytes);
    assert_eq!(converted.sha256, Sha256::digest(&webp).to_vec());
    assert_eq!(
        app.used("w1").await,
        scanned.len() as u64 + webp.len() as u64
    );
}

#[tokio::test]
async fn the_embedded_default_stores_and_serves_a_receipt_too() {
    let app = spawn_app(Stack::Embedded).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = pdf(2);
    let stored = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "application/pdf",
            &bytes,
        )
        .await
        .unwrap();
    assert_eq!(stored.page_count, 2);
    let info = app
        .get_image(&token, target(TargetKind::Receipt, &stored.image_id))
        .await
        .unwrap();
    assert_eq!(app.fetch(&info.url).await, (200, bytes));
}

#[tokio::test]
async fn an_entry_and_an_invoice_take_one_image_each_under_their_own_id() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 0).await;
    app.register_target(
        target(TargetKind::ExpenseEntry, "A2C40CEE415B43B2A0BE"),
        "w1",
        "u1",
    )
    .await;
    app.register_target(
        target(TargetKind::Invoice, "884E2WRE415B43B2A0BE"),
        "w1",
        "u1",
    )
    .await;
    let token = app.token("u1", "w1", &[], &[]);

    let entry = app
        .upload(
            &token,
            target(TargetKind::ExpenseEntry, "A2C40CEE415B43B2A0BE"),
            "image/png",
            &png(50, 40),
        )
        .await
        .unwrap();
    assert_eq!(entry.image_id, "A2C40CEE415B43B2A0BE");
    let invoice = app
        .upload(
            &token,
            target(TargetKind::Invoice, "884E2WRE415B43B2A0BE"),
            "image/jpg",
            &jpeg(30, 20),
        )
        .await
        .unwrap();
    assert_eq!(invoice.image_id, "884E2WRE415B43B2A0BE");
    assert_eq!(
        invoice.content_type, "image/jpeg",
        "image/jpg is an alias of image/jpeg"
    );

    let again = app
        .upload(
            &token,
            target(TargetKind::ExpenseEntry, "A2C40CEE415B43B2A0BE"),
            "image/png",
            &png(10, 10),
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&again), "ALREADY_ATTACHED");
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
    let kept = app
        .get_image(
            &token,
            target(TargetKind::ExpenseEntry, "A2C40CEE415B43B2A0BE"),
        )
        .await
        .unwrap();
    assert_eq!(
        kept.path, entry.path,
        "the first image is never overwritten"
    );
    assert_eq!(app.objects().await.len(), 2);
}

#[tokio::test]
async fn a_report_gathers_jpeg_png_and_pdf_uploads_into_one_pdf() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 0).await;
    app.register_target(target(TargetKind::Report, "R1"), "w1", "u1")
        .await;
    let token = app.token("u1", "w1", &[], &[]);
    let report = || target(TargetKind::Report, "R1");

    let photo = jpeg(120, 80);
    let first = app
        .upload(&token, report(), "image/jpeg", &photo)
        .await
        .unwrap();
    assert_eq!(
        (first.page_count, first.content_type.as_str()),
        (1, "application/pdf")
    );
    let second = app
        .upload(&token, report(), "image/png", &png(60, 60))
        .await
        .unwrap();
    assert_eq!(second.page_count, 2);
    let third = app
        .upload(&token, report(), "application/pdf", &pdf(3))
        .await
        .unwrap();
    assert_eq!(third.page_count, 5);

    let objects = app.objects().await;
    assert_eq!(
        objects.len(),
        1,
        "one report PDF, old versions removed: {objects:?}"
    );
    let stored = app.object(&third.path).await;
    assert_eq!(pdf_pages(&stored), 5);
    assert_eq!(
        app.used("w1").await,
        stored.len() as u64,
        "quota follows the report's size"
    );
    let doc = lopdf::Document::load_mem(&stored).unwrap();
    let embedded_jpeg = doc
        .objects
        .values()
        .any(|object| matches!(object, lopdf::Object::Stream(s) if s.content == photo));
    assert!(embedded_jpeg, "the JPEG is embedded as-is, not re-encoded");
}

#[tokio::test]
async fn a_workspace_expense_becomes_webp_and_a_new_upload_replaces_it() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 0).await;
    app.register_target(expense("w1", "exp-1"), "w1", "u1")
        .await;
    let token = app.token("u2", "w1", &["staff"], &["financial"]);

    let first = app
        .upload(
            &token,
            expense("w1", "exp-1"),
            "image/jpeg",
            &jpeg(3000, 1000),
        )
        .await
        .unwrap();
    assert_eq!(first.content_type, "image/webp");
    assert_eq!(first.width, 2048);
    assert!((682..=684).contains(&first.height), "{}", first.height);
    assert!(
        first
            .path
            .starts_with("ws/w1/workspace-expenses/exp-1/receipt-"),
        "{}",
        first.path
    );
    let stored = app.object(&first.path).await;
    assert_eq!(stored.len() as u64, first.size_bytes);
    let decoded = image::load_from_memory_with_format(&stored, image::ImageFormat::WebP).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (first.width, first.height)
    );
    assert_eq!(app.used("w1").await, first.size_bytes);

    let second = app
        .upload(&token, expense("w1", "exp-1"), "image/png", &png(300, 200))
        .await
        .unwrap();
    assert_eq!((second.width, second.height), (300, 200), "never upscaled");
    let objects = app.objects().await;
    assert_eq!(objects.len(), 1, "the old image is deleted: {objects:?}");
    assert_eq!(objects[0].key, second.path);
    assert_eq!(
        app.used("w1").await,
        second.size_bytes,
        "quota follows the replacement"
    );
}

#[tokio::test]
async fn deleting_an_image_removes_the_object_and_releases_its_bytes() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 0).await;
    app.register_target(expense("w1", "e1"), "w1", "u1").await;
    let token = app.token("u1", "w1", &["owner"], &[]);
    let stored = app
        .upload(&token, expense("w1", "e1"), "image/png", &png(64, 64))
        .await
        .unwrap();
    assert_eq!(
        app.delete_image(&token, expense("w1", "e1")).await.unwrap(),
        stored.size_bytes
    );
    assert!(app.objects().await.is_empty());
    assert_eq!(app.used("w1").await, 0);
    let gone = app
        .get_image(&token, expense("w1", "e1"))
        .await
        .unwrap_err();
    assert_eq!(reason(&gone), "IMAGE_NOT_FOUND");
    let usage = app.usage(&token, "w1").await.unwrap();
    assert_eq!(
        (usage.used_bytes, usage.limit_bytes),
        (0, app.settings.limits.quota.default_bytes)
    );
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_result_without_a_second_charge() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(100, 100);
    let mut header = crate::helpers::header(target(TargetKind::Receipt, ""), "image/jpeg", &bytes);
    header.idempotency_key = "key-1".into();
    let send = |h: imaging_proto::v1::UploadHeader, b: Vec<u8>| {
        let app = &app;
        let token = token.clone();
        async move {
            app.upload_messages(&token, crate::helpers::messages(h, &b, 4096))
                .await
        }
    };
    let first = send(header.clone(), bytes.clone()).await.unwrap();
    let again = send(header.clone(), bytes.clone()).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!((again.image_id, again.path), (first.image_id, first.path));
    assert_eq!(app.objects().await.len(), 1);
    assert_eq!(app.used("w1").await, bytes.len() as u64);

    let other = jpeg(101, 100);
    let mut changed = header.clone();
    changed.declared_size = other.len() as u64;
    let refused = send(changed, other).await.unwrap_err();
    assert_eq!(reason(&refused), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.objects().await.len(), 1);
}

#[tokio::test]
async fn a_declared_sha256_is_verified() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = png(20, 20);
    let mut header = crate::helpers::header(target(TargetKind::Receipt, ""), "image/png", &bytes);
    header.sha256 = Sha256::digest(&bytes).to_vec();
    app.upload_messages(
        &token,
        crate::helpers::messages(header.clone(), &bytes, 1000),
    )
    .await
    .unwrap();
    header.sha256 = Sha256::digest(b"other").to_vec();
    let refused = app
        .upload_messages(&token, crate::helpers::messages(header, &bytes, 1000))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "CHECKSUM_MISMATCH");
    assert_eq!(app.objects().await.len(), 1);
    assert_eq!(app.used("w1").await, bytes.len() as u64);
}
