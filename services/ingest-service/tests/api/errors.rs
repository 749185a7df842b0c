//! Every refusal, with its reason, and proof that nothing was stored or charged.

use crate::helpers::{Stack, TestApp, expense, header, messages, reason, spawn_app, target};
use imaging_e2e::fixtures::{OWNER_PASSWORD_PDF, USER_PASSWORD_PDF, jpeg, pdf, png, png_bomb};
use imaging_proto::v1::{self, TargetKind};
use tonic::Code;

/// Asserts the upload failed with `code`/`expected` and left storage and quota untouched.
async fn refused(
    app: &TestApp,
    result: Result<v1::UploadImageResponse, tonic::Status>,
    code: Code,
    expected: &str,
) {
    let status = result.expect_err(expected);
    assert_eq!(reason(&status), expected, "{status:?}");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        app.objects().await.is_empty(),
        "nothing stored after {expected}"
    );
    assert_eq!(app.used("w1").await, 0, "nothing charged after {expected}");
}

fn receipt() -> v1::Target {
    target(TargetKind::Receipt, "")
}

#[tokio::test]
async fn an_upload_over_ten_megabytes_is_refused_at_the_first_extra_byte_and_nothing_is_stored() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut bytes = jpeg(64, 64);
    bytes.resize(10 * 1024 * 1024 + 1, 0);
    let mut h = header(receipt(), "image/jpeg", &bytes);
    h.declared_size = 0; // unknown size: the stream itself must be cut off
    let result = app
        .upload_messages(&token, messages(h, &bytes, 1024 * 1024))
        .await;
    refused(&app, result, Code::OutOfRange, "FILE_TOO_LARGE").await;

    let exact = {
        let mut b = jpeg(64, 64);
        b.resize(10 * 1024 * 1024, 0);
        b
    };
    let h = header(receipt(), "image/jpeg", &exact);
    let ok = app
        .upload_messages(&token, messages(h, &exact, 1024 * 1024))
        .await;
    assert!(
        ok.is_ok(),
        "exactly 10 MiB is accepted (trailing bytes after EOI are tolerated): {ok:?}"
    );
}

#[tokio::test]
async fn a_declared_size_over_the_limit_is_refused_before_any_byte() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut h = header(receipt(), "image/jpeg", b"");
    h.declared_size = 10 * 1024 * 1024 + 1;
    let result = app.upload_messages(&token, messages(h, b"", 1)).await;
    refused(&app, result, Code::OutOfRange, "FILE_TOO_LARGE").await;
}

#[tokio::test]
async fn chunks_over_one_mebibyte_are_refused() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut bytes = jpeg(64, 64);
    bytes.resize(2 * 1024 * 1024, 0);
    let h = header(receipt(), "image/jpeg", &bytes);
    let result = app
        .upload_messages(&token, messages(h, &bytes, 1024 * 1024 + 1))
        .await;
    refused(&app, result, Code::InvalidArgument, "CHUNK_TOO_LARGE").await;
}

#[tokio::test]
async fn types_that_are_not_accepted_or_do_not_match_the_bytes_are_refused() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x01\0\0\0\x01\0\0\0".to_vec();
    refused(
        &app,
        app.upload(&token, receipt(), "image/bmp", &bmp).await,
        Code::InvalidArgument,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    // A GIF is taken, but one with no frame is no image.
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    refused(
        &app,
        app.upload(&token, receipt(), "image/gif", &gif).await,
        Code::InvalidArgument,
        "CORRUPT_IMAGE",
    )
    .await;
    refused(
        &app,
        app.upload(&token, receipt(), "image/webp", &png(4, 4))
            .await,
        Code::InvalidArgument,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    refused(
        &app,
        app.upload(&token, receipt(), "image/jpeg", &png(40, 40))
            .await,
        Code::InvalidArgument,
        "CONTENT_TYPE_MISMATCH",
    )
    .await;
    refused(
        &app,
        app.upload(&token, receipt(), "application/pdf", &jpeg(40, 40))
            .await,
        Code::InvalidArgument,
        "CONTENT_TYPE_MISMATCH",
    )
    .await;
    refused(
        &app,
        app.upload(
            &token,
            receipt(),
            "image/png",
            b"plain text, not an image at all",
        )
        .await,
        Code::InvalidArgument,
        "CONTENT_TYPE_MISMATCH",
    )
    .await;
}

#[tokio::test]
async fn corrupt_images_bombs_and_encrypted_pdfs_are_refused() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let truncated = {
        let full = jpeg(400, 300);
        full[..full.len() / 2].to_vec()
    };
    refused(
        &app,
        app.upload(&token, receipt(), "image/jpeg", &truncated)
            .await,
        Code::InvalidArgument,
        "CORRUPT_IMAGE",
    )
    .await;

    let bomb = app
        .upload(&token, receipt(), "image/png", &png_bomb())
        .await
        .unwrap_err();
    assert_eq!(reason(&bomb), "CORRUPT_IMAGE");
    let details = tonic_types::StatusExt::get_error_details(&bomb);
    assert_eq!(
        details
            .error_info()
            .unwrap()
            .metadata
            .get("cause")
            .map(String::as_str),
        Some("TOO_MANY_PIXELS")
    );

    refused(
        &app,
        app.upload(&token, receipt(), "application/pdf", USER_PASSWORD_PDF)
            .await,
        Code::InvalidArgument,
        "ENCRYPTED_PDF",
    )
    .await;
    refused(
        &app,
        app.upload(&token, receipt(), "application/pdf", OWNER_PASSWORD_PDF)
            .await,
        Code::InvalidArgument,
        "ENCRYPTED_PDF",
    )
    .await;
    let broken_pdf =
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF".to_vec();
    refused(
        &app,
        app.upload(&token, receipt(), "application/pdf", &broken_pdf)
            .await,
        Code::InvalidArgument,
        "CORRUPT_IMAGE",
    )
    .await;
}

#[tokio::test]
async fn tokens_that_are_missing_expired_or_forged_are_refused() {
    let app = spawn_app(Stack::Real).await;
    let bytes = png(8, 8);
    let expired = app.token_expiring("u1", "w1", &[], &[], -120);
    refused(
        &app,
        app.upload(&expired, receipt(), "image/png", &bytes).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    )
    .await;
    refused(
        &app,
        app.upload("not-a-jwt", receipt(), "image/png", &bytes)
            .await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    )
    .await;
    let forged = {
        let claims = ingest_service::auth::Claims::expiring_in("u1", "w1", &[], &[], 60);
        ingest_service::auth::mint_hs256("someone-elses-secret", &claims).unwrap()
    };
    refused(
        &app,
        app.upload(&forged, receipt(), "image/png", &bytes).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    )
    .await;
    let mut anonymous = app.ingest.clone();
    let result = anonymous
        .upload_image(tonic::Request::new(tokio_stream::iter(messages(
            header(receipt(), "image/png", &bytes),
            &bytes,
            100,
        ))))
        .await
        .map(tonic::Response::into_inner);
    refused(&app, result, Code::Unauthenticated, "TOKEN_MISSING").await;
}

#[tokio::test]
async fn unknown_targets_wrong_workspaces_and_wrong_users_are_refused() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 0).await;
    app.register_workspace("w2", 0).await;
    app.register_target(target(TargetKind::ExpenseEntry, "E1"), "w1", "u1")
        .await;
    app.register_target(expense("w1", "x1"), "w1", "u1").await;
    let bytes = png(8, 8);
    let owner = app.token("u1", "w1", &[], &[]);
    refused(
        &app,
        app.upload(
            &owner,
            target(TargetKind::ExpenseEntry, "NOPE"),
            "image/png",
            &bytes,
        )
        .await,
        Code::NotFound,
        "TARGET_NOT_FOUND",
    )
    .await;
    refused(
        &app,
        app.upload(&owner, expense("w2", "x1"), "image/png", &bytes)
            .await,
        Code::NotFound,
        "TARGET_NOT_FOUND",
    )
    .await;
    let foreign_admin = app.token("u9", "w2", &["company_admin"], &[]);
    refused(
        &app,
        app.upload(
            &foreign_admin,
            target(TargetKind::ExpenseEntry, "E1"),
            "image/png",
            &bytes,
        )
        .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    )
    .await;
    let colleague = app.token("u2", "w1", &[], &[]);
    refused(
        &app,
        app.upload(
            &colleague,
            target(TargetKind::ExpenseEntry, "E1"),
            "image/png",
            &bytes,
        )
        .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    )
    .await;
    let staff = app.token("u2", "w1", &["staff"], &[]);
    refused(
        &app,
        app.upload(&staff, expense("w1", "x1"), "image/png", &bytes)
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    )
    .await;
    let staff_elsewhere = app.token("u2", "w2", &["owner"], &[]);
    refused(
        &app,
        app.upload(&staff_elsewhere, expense("w1", "x1"), "image/png", &bytes)
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    )
    .await;
    refused(
        &app,
        app.upload(
            &owner,
            target(TargetKind::ExpenseEntry, "../etc"),
            "image/png",
            &bytes,
        )
        .await,
        Code::InvalidArgument,
        "INVALID_ID",
    )
    .await;
    let admin = app.token("u3", "w1", &["company_admin"], &[]);
    app.upload(
        &admin,
        target(TargetKind::ExpenseEntry, "E1"),
        "image/png",
        &bytes,
    )
    .await
    .expect("a workspace admin may upload for its users");
    let not_service = app
        .registry
        .clone()
        .register_workspace(crate::helpers::authed(
            &owner,
            v1::RegisterWorkspaceRequest {
                workspace_id: "w3".into(),
                quota_bytes: 0,
                refuse_duplicates: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&not_service), "PERMISSION_DENIED");
}

#[tokio::test]
async fn malformed_streams_are_refused() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = png(8, 8);
    let mut only_chunks = messages(header(receipt(), "image/png", &bytes), &bytes, 10);
    only_chunks.remove(0);
    refused(
        &app,
        app.upload_messages(&token, only_chunks).await,
        Code::InvalidArgument,
        "INVALID_REQUEST",
    )
    .await;
    refused(
        &app,
        app.upload_messages(
            &token,
            messages(header(receipt(), "image/png", b""), b"", 10),
        )
        .await,
        Code::InvalidArgument,
        "MISSING_FILE",
    )
    .await;
    let mut wrong_size = header(receipt(), "image/png", &bytes);
    wrong_size.declared_size += 1;
    refused(
        &app,
        app.upload_messages(&token, messages(wrong_size, &bytes, 10))
            .await,
        Code::InvalidArgument,
        "SIZE_MISMATCH",
    )
    .await;
    // A receipt ID names an existing receipt to append to: an unknown one is not found.
    let mut with_id = header(target(TargetKind::Receipt, "chosen"), "image/png", &bytes);
    with_id.file_name = "x.png".into();
    refused(
        &app,
        app.upload_messages(&token, messages(with_id, &bytes, 10))
            .await,
        Code::NotFound,
        "IMAGE_NOT_FOUND",
    )
    .await;
    // An owner is for receipts only.
    let mut with_owner = header(target(TargetKind::Report, "R1"), "image/png", &bytes);
    with_owner.owner = "u2".into();
    refused(
        &app,
        app.upload_messages(&token, messages(with_owner, &bytes, 10))
            .await,
        Code::InvalidArgument,
        "INVALID_REQUEST",
    )
    .await;
}

#[tokio::test]
async fn an_upload_that_does_not_fit_the_quota_is_refused_and_charges_nothing() {
    let app = spawn_app(Stack::Real).await;
    let first = pdf(1);
    app.register_workspace("w1", first.len() as u64 + 100).await;
    let token = app.token("u1", "w1", &[], &[]);
    app.upload(&token, receipt(), "application/pdf", &first)
        .await
        .unwrap();
    let second = pdf(2);
    let status = app
        .upload(&token, receipt(), "application/pdf", &second)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "QUOTA_EXCEEDED");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(app.objects().await.len(), 1);
    assert_eq!(app.used("w1").await, first.len() as u64);

    let mut unknown_size = header(receipt(), "application/pdf", &second);
    unknown_size.declared_size = 0;
    let status = app
        .upload_messages(&token, messages(unknown_size, &second, 100))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&status),
        "QUOTA_EXCEEDED",
        "checked again when the size is known"
    );
    assert_eq!(app.objects().await.len(), 1);
    assert_eq!(app.used("w1").await, first.len() as u64);
}

#[tokio::test]
async fn a_storage_server_that_refuses_the_service_is_an_internal_error_not_a_retry() {
    let app = crate::helpers::spawn_app_with(Stack::Real, |settings| {
        if let ingest_service::configuration::StorageSettings::S3 { secret_key, .. } =
            &mut settings.storage
        {
            *secret_key = "not-the-secret".into();
        }
    })
    .await;
    let token = app.token("u1", "w1", &[], &[]);
    let status = app
        .upload(&token, receipt(), "image/png", &png(16, 16))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "INTERNAL", "{status:?}");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(
        status.message(),
        "internal error",
        "no backend detail leaks"
    );
    use tonic_types::StatusExt;
    assert!(
        status.get_error_details().retry_info().is_none(),
        "a permanent failure does not invite retries"
    );
    assert_eq!(app.used("w1").await, 0, "the reservation is released");
}
