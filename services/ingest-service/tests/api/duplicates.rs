//! Duplicate receipts flagged at ingest, over real gRPC on the embedded store and on S3 + Redis,
//! with receipt photos drawn by Pillow (`tests/clients/receipts.py`): the same photo uploaded
//! again, re-encoded, halved, turned by its EXIF orientation or as a PNG is answered with the
//! earlier image; receipts of the same shop and layout with other amounts are not; a delete
//! takes an image out of the index; a workspace that refuses duplicates gets DUPLICATE_IMAGE for
//! the same bytes and nothing is stored or charged.

use crate::helpers::{Stack, TestApp, expense, reason, spawn_app_with, target};
use imaging_proto::v1::{self, DuplicateMatch, TargetKind};
use std::collections::HashMap;

/// The receipt photos, by file name.
fn photos() -> HashMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/receipts.py"
    );
    let status = std::process::Command::new("python3")
        .args([script, &dir.path().to_string_lossy()])
        .status()
        .expect("python3 with Pillow (the README's test command installs it)");
    assert!(status.success());
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

async fn upload(
    app: &TestApp,
    token: &str,
    name: &str,
    bytes: &[u8],
) -> Result<v1::UploadImageResponse, tonic::Status> {
    let content_type = if name.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    app.upload(token, target(TargetKind::Receipt, ""), content_type, bytes)
        .await
}

fn named(response: &v1::UploadImageResponse) -> Vec<(String, DuplicateMatch)> {
    response
        .duplicates
        .iter()
        .map(|d| (d.image_id.clone(), d.r#match()))
        .collect()
}

async fn the_same_photo_is_flagged_and_other_amounts_are_not(stack: Stack) {
    let photos = photos();
    let app = spawn_app_with(stack, |_| {}).await;
    let token = app.token("u1", "w1", &[], &[]);
    let base = upload(&app, &token, "base.jpg", &photos["base.jpg"])
        .await
        .unwrap();
    assert!(base.duplicates.is_empty());
    // Receipts of the same shop and layout with other amounts, and another shop's: none is
    // flagged, against the base or against each other.
    for name in [
        "other0.jpg",
        "other1.jpg",
        "other2.jpg",
        "other3.jpg",
        "other4.jpg",
        "shop2.jpg",
    ] {
        let other = upload(&app, &token, name, &photos[name]).await.unwrap();
        assert!(
            other.duplicates.is_empty(),
            "{name}: {:?}",
            other.duplicates
        );
    }
    // The same bytes again: an exact match.
    let again = upload(&app, &token, "base.jpg", &photos["base.jpg"])
        .await
        .unwrap();
    assert_eq!(
        named(&again),
        [(base.image_id.clone(), DuplicateMatch::Exact)]
    );
    assert_eq!(again.duplicates[0].distance, 0);
    // The same photo re-encoded, halved, turned by its EXIF orientation, as a PNG: the same
    // picture as both earlier copies (exact matches of the base first, then the closest).
    for name in ["q60.jpg", "half.jpg", "exif6.jpg", "base.png"] {
        let copy = upload(&app, &token, name, &photos[name]).await.unwrap();
        let found = named(&copy);
        assert!(
            found.contains(&(base.image_id.clone(), DuplicateMatch::Perceptual))
                && found.contains(&(again.image_id.clone(), DuplicateMatch::Perceptual)),
            "{name}: {found:?}"
        );
        assert!(found.len() <= 5);
    }
    // What an upload was answered with is kept with the image.
    let info = app
        .get_image(&token, target(TargetKind::Receipt, &again.image_id))
        .await
        .unwrap();
    assert_eq!(info.duplicates, again.duplicates);
    // Another workspace's images are not its duplicates.
    let elsewhere = app.token("u1", "w2", &[], &[]);
    let there = upload(&app, &elsewhere, "base.jpg", &photos["base.jpg"])
        .await
        .unwrap();
    assert!(there.duplicates.is_empty());
    // A deleted image leaves the index.
    app.delete_image(&token, target(TargetKind::Receipt, &base.image_id))
        .await
        .unwrap();
    let third = upload(&app, &token, "base.jpg", &photos["base.jpg"])
        .await
        .unwrap();
    let found = named(&third);
    assert_eq!(found[0], (again.image_id.clone(), DuplicateMatch::Exact));
    assert!(
        found.iter().all(|(id, _)| *id != base.image_id),
        "{found:?}"
    );
}

#[tokio::test]
async fn the_same_photo_is_flagged_and_other_amounts_are_not_embedded() {
    the_same_photo_is_flagged_and_other_amounts_are_not(Stack::Embedded).await;
}

#[tokio::test]
async fn the_same_photo_is_flagged_and_other_amounts_are_not_on_redis() {
    the_same_photo_is_flagged_and_other_amounts_are_not(Stack::Real).await;
}

/// Registers w1 again, refusing duplicates or not.
async fn refuse_duplicates(app: &TestApp, refuse: bool) {
    app.registry
        .clone()
        .register_workspace(imaging_e2e::service::authed(
            &app.service_token(),
            v1::RegisterWorkspaceRequest {
                workspace_id: "w1".into(),
                quota_bytes: 0,
                refuse_duplicates: Some(refuse),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_workspace_that_refuses_duplicates_gets_duplicate_image_for_the_same_bytes() {
    let photos = photos();
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    refuse_duplicates(&app, true).await;
    let token = app.token("u1", "w1", &[], &[]);
    let first = upload(&app, &token, "base.jpg", &photos["base.jpg"])
        .await
        .unwrap();
    let used = app.used("w1").await;
    let objects = app.objects().await.len();
    let refused = upload(&app, &token, "base.jpg", &photos["base.jpg"])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    assert_eq!(reason(&refused), "DUPLICATE_IMAGE");
    let info = tonic_types::StatusExt::get_error_details(&refused)
        .error_info()
        .cloned()
        .unwrap();
    assert_eq!(info.metadata["image_id"], first.image_id);
    assert_eq!(app.used("w1").await, used, "nothing charged");
    assert_eq!(app.objects().await.len(), objects, "nothing stored");
    // Only exact copies are refused: another encoding of the photo is stored and flagged.
    let flagged = upload(&app, &token, "q60.jpg", &photos["q60.jpg"])
        .await
        .unwrap();
    assert_eq!(
        named(&flagged),
        [(first.image_id.clone(), DuplicateMatch::Perceptual)]
    );
    // A workspace expense uploaded again with its own bytes replaces itself: not a duplicate.
    app.register_target(expense("w1", "X1"), "w1", "u1").await;
    let staff = app.token("u2", "w1", &["staff"], &["financial"]);
    let png = imaging_e2e::fixtures::png(64, 48);
    for _ in 0..2 {
        let stored = app
            .upload(&staff, expense("w1", "X1"), "image/png", &png)
            .await
            .unwrap();
        assert!(stored.duplicates.is_empty());
    }
    // Turning refusal off again flags instead.
    refuse_duplicates(&app, false).await;
    let allowed = upload(&app, &token, "base.jpg", &photos["base.jpg"])
        .await
        .unwrap();
    assert_eq!(allowed.duplicates[0].image_id, first.image_id);
}
