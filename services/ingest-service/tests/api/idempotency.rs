//! Idempotency keys: a retry replays the first result whatever the quota, keys belong to one
//! caller (workspace and user), and a key whose image is gone starts a new upload.

use crate::helpers::{Stack, TestApp, header, messages, reason, spawn_app, target};
use imaging_e2e::fixtures::jpeg;
use imaging_proto::v1::{self, TargetKind};

/// Uploads `bytes` as a receipt with `key` and `token`.
async fn upload_with_key(
    app: &TestApp,
    token: &str,
    key: &str,
    bytes: &[u8],
) -> Result<v1::UploadImageResponse, tonic::Status> {
    let mut header = header(target(TargetKind::Receipt, ""), "image/jpeg", bytes);
    header.idempotency_key = key.into();
    app.upload_messages(token, messages(header, bytes, 4096))
        .await
}

#[tokio::test]
async fn a_replay_succeeds_when_the_workspace_is_full_and_charges_nothing() {
    let app = spawn_app(Stack::Real).await;
    let bytes = jpeg(64, 48);
    app.register_workspace("w1", bytes.len() as u64).await;
    let token = app.token("u1", "w1", &[], &[]);

    let first = upload_with_key(&app, &token, "k", &bytes).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(
        app.used("w1").await,
        bytes.len() as u64,
        "the quota is full"
    );

    let again = upload_with_key(&app, &token, "k", &bytes)
        .await
        .expect("a replay is not refused for quota");
    assert!(again.replayed);
    assert_eq!(
        (&again.image_id, &again.path),
        (&first.image_id, &first.path)
    );
    assert_eq!(app.objects().await.len(), 1);
    assert_eq!(app.used("w1").await, bytes.len() as u64);

    let other = jpeg(65, 48);
    let fresh = upload_with_key(&app, &token, "k2", &other)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&fresh),
        "QUOTA_EXCEEDED",
        "a new key is charged as usual"
    );
}

#[tokio::test]
async fn the_same_user_and_key_in_two_workspaces_are_two_uploads() {
    let app = spawn_app(Stack::Real).await;
    let bytes = jpeg(40, 30);
    app.register_workspace("wA", 0).await;
    app.register_workspace("wB", 0).await;
    let in_a = app.token("u1", "wA", &[], &[]);
    let in_b = app.token("u1", "wB", &[], &[]);
    let a = upload_with_key(&app, &in_a, "k", &bytes).await.unwrap();
    let b = upload_with_key(&app, &in_b, "k", &bytes).await.unwrap();
    assert!(
        !b.replayed,
        "workspace B gets no replay of workspace A's upload"
    );
    assert!(a.path.starts_with("ws/wA/"), "{}", a.path);
    assert!(b.path.starts_with("ws/wB/"), "{}", b.path);
    assert_eq!(app.used("wB").await, bytes.len() as u64);
    app.get_image(&in_b, target(TargetKind::Receipt, &b.image_id))
        .await
        .expect("B reads its own receipt");
}

#[tokio::test]
async fn a_user_and_key_that_join_to_the_same_text_do_not_share_a_scope() {
    let app = spawn_app(Stack::Embedded).await;
    let bytes = jpeg(40, 30);
    let first = upload_with_key(&app, &app.token("u1:k1", "w1", &[], &[]), "k2", &bytes)
        .await
        .unwrap();
    let second = upload_with_key(&app, &app.token("u1", "w1", &[], &[]), "k1:k2", &bytes)
        .await
        .unwrap();
    assert!(!second.replayed);
    assert_ne!(first.image_id, second.image_id);
    assert_eq!(app.objects().await.len(), 2);
}

#[tokio::test]
async fn a_key_whose_image_was_deleted_starts_a_new_upload() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(40, 30);
    let first = upload_with_key(&app, &token, "k", &bytes).await.unwrap();
    app.delete_image(&token, target(TargetKind::Receipt, &first.image_id))
        .await
        .unwrap();
    let again = upload_with_key(&app, &token, "k", &bytes).await.unwrap();
    assert!(!again.replayed, "nothing to replay");
    assert_ne!(again.image_id, first.image_id);
    let info = app
        .get_image(&token, target(TargetKind::Receipt, &again.image_id))
        .await
        .expect("the new receipt is readable");
    assert_eq!(info.size_bytes, bytes.len() as u64);
    assert_eq!(app.used("w1").await, bytes.len() as u64);
}

#[tokio::test]
async fn a_key_reused_for_another_target_or_declared_checksum_is_refused_before_the_bytes() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 0).await;
    app.register_target(target(TargetKind::ExpenseEntry, "E1"), "w1", "u1")
        .await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(40, 30);
    upload_with_key(&app, &token, "k", &bytes).await.unwrap();

    let mut to_entry = header(target(TargetKind::ExpenseEntry, "E1"), "image/jpeg", &bytes);
    to_entry.idempotency_key = "k".into();
    let refused = app
        .upload_messages(&token, messages(to_entry, &bytes, 4096))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "IDEMPOTENCY_KEY_REUSED");

    let mut other_sha = header(target(TargetKind::Receipt, ""), "image/jpeg", &bytes);
    other_sha.idempotency_key = "k".into();
    other_sha.sha256 = vec![7; 32];
    let refused = app
        .upload_messages(&token, messages(other_sha, &[], 4096))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.objects().await.len(), 1);
}
