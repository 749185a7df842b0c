//! One contract, every backend: the object stores (filesystem, S3) and the state stores
//! (embedded, Redis) must behave the same.

use crate::helpers::{Stack, spawn_app};
use bytes::Bytes;
use imaging_service::state::{Catalog, ImageRecord, Quota, Reservation, TargetRecord};
use imaging_service::storage::{ObjectStore, StorageError};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Writes `bytes` with their SHA-256, as the service does.
async fn put(
    store: &dyn ObjectStore,
    key: &str,
    bytes: Bytes,
    content_type: &str,
) -> Result<(), StorageError> {
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    store.put(key, bytes, &sha256, content_type).await
}

async fn storage_contract(store: &dyn ObjectStore, fetch: impl AsyncFn(&str) -> (u16, Vec<u8>)) {
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    put(
        store,
        "ws/w1/receipts/a/1.jpg",
        Bytes::from(bytes.clone()),
        "image/jpeg",
    )
    .await
    .unwrap();
    put(
        store,
        "ws/w1/receipts/b/2.pdf",
        Bytes::from_static(b"%PDF-1.4"),
        "application/pdf",
    )
    .await
    .unwrap();
    put(
        store,
        "ws/w2/invoices/c/3.png",
        Bytes::from_static(b"png"),
        "image/png",
    )
    .await
    .unwrap();

    let got = store.get("ws/w1/receipts/a/1.jpg").await.unwrap().unwrap();
    assert_eq!(
        got.as_ref(),
        bytes.as_slice(),
        "stored bytes come back byte for byte"
    );
    assert!(store.get("ws/w1/none").await.unwrap().is_none());

    let listed = store.list("ws/w1/").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|e| (e.key.as_str(), e.size)).collect();
    assert_eq!(
        keys,
        vec![
            ("ws/w1/receipts/a/1.jpg", 300_000),
            ("ws/w1/receipts/b/2.pdf", 8)
        ]
    );

    put(
        store,
        "ws/w1/receipts/b/2.pdf",
        Bytes::from_static(b"%PDF-1.7 new"),
        "application/pdf",
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .get("ws/w1/receipts/b/2.pdf")
            .await
            .unwrap()
            .unwrap()
            .as_ref(),
        b"%PDF-1.7 new"
    );

    let url = store
        .url("ws/w1/receipts/a/1.jpg", Duration::from_secs(60))
        .await
        .unwrap();
    let (status, body) = fetch(&url).await;
    assert_eq!(status, 200, "{url}");
    assert_eq!(body, bytes, "the expiring URL serves the stored bytes");
    let tampered = url.replace("1.jpg", "2.pdf");
    assert_ne!(
        fetch(&tampered).await.0,
        200,
        "a URL signed for one object does not open another"
    );

    store.delete("ws/w1/receipts/a/1.jpg").await.unwrap();
    store.delete("ws/w1/receipts/a/1.jpg").await.unwrap();
    assert!(store.get("ws/w1/receipts/a/1.jpg").await.unwrap().is_none());
    assert!(put(store, "../escape", Bytes::new(), "x").await.is_err());
    store.check().await.unwrap();
}

async fn quota_contract(quota: &dyn Quota) {
    assert_eq!(quota.limit("w1").await.unwrap(), None);
    quota.set_limit("w1", 100).await.unwrap();
    assert_eq!(quota.limit("w1").await.unwrap(), Some(100));
    assert_eq!(
        quota.reserve("w1", 60, 1000).await.unwrap(),
        Reservation::Granted { used: 60 }
    );
    assert_eq!(
        quota.reserve("w1", 41, 1000).await.unwrap(),
        Reservation::Exceeded {
            limit: 100,
            used: 60
        }
    );
    assert_eq!(
        quota.reserve("w1", 40, 1000).await.unwrap(),
        Reservation::Granted { used: 100 }
    );
    quota.release("w1", 30).await.unwrap();
    assert_eq!(quota.used("w1").await.unwrap(), 70);
    quota.release("w1", 500).await.unwrap();
    assert_eq!(
        quota.used("w1").await.unwrap(),
        0,
        "usage never goes below zero"
    );
    assert_eq!(
        quota.reserve("w2", 5, 4).await.unwrap(),
        Reservation::Exceeded { limit: 4, used: 0 }
    );
    assert_eq!(
        quota.reserve("w2", 4, 4).await.unwrap(),
        Reservation::Granted { used: 4 }
    );
    assert_eq!(quota.set_used("w2", 9).await.unwrap(), 4);
    assert_eq!(quota.used("w2").await.unwrap(), 9);
    assert_eq!(
        quota.workspaces().await.unwrap(),
        vec!["w1".to_owned(), "w2".to_owned()]
    );
    quota.check().await.unwrap();
}

async fn catalog_contract(catalog: &dyn Catalog) {
    let target = TargetRecord {
        workspace: "w1".into(),
        owner: "u1".into(),
    };
    assert!(
        catalog
            .put_target("EXPENSE_ENTRY:e1", &target)
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .put_target("EXPENSE_ENTRY:e1", &target)
            .await
            .unwrap()
    );
    assert_eq!(
        catalog.target("EXPENSE_ENTRY:e1").await.unwrap(),
        Some(target)
    );
    assert!(catalog.remove_target("EXPENSE_ENTRY:e1").await.unwrap());
    assert!(!catalog.remove_target("EXPENSE_ENTRY:e1").await.unwrap());

    let image = ImageRecord {
        image_id: "e1".into(),
        key: "ws/w1/expense-entries/e1/x.pdf".into(),
        workspace: "w1".into(),
        owner: "u1".into(),
        content_type: "application/pdf".into(),
        size: 42,
        width: 0,
        height: 0,
        page_count: 2,
        sha256: "00".into(),
    };
    catalog.put_image("EXPENSE_ENTRY:e1", &image).await.unwrap();
    assert_eq!(
        catalog.image("EXPENSE_ENTRY:e1").await.unwrap(),
        Some(image.clone())
    );
    assert_eq!(
        catalog.take_image("EXPENSE_ENTRY:e1").await.unwrap(),
        Some(image)
    );
    assert_eq!(catalog.image("EXPENSE_ENTRY:e1").await.unwrap(), None);

    let first = catalog
        .try_lock("t", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free lock");
    assert!(
        catalog
            .try_lock("t", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "a held lock is exclusive"
    );
    catalog.unlock("t", "someone-else").await.unwrap();
    assert!(
        catalog
            .try_lock("t", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "only the holder unlocks"
    );
    catalog.unlock("t", &first).await.unwrap();
    assert!(
        catalog
            .try_lock("t", Duration::from_secs(30))
            .await
            .unwrap()
            .is_some()
    );
    let _short = catalog
        .try_lock("s", Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        catalog
            .try_lock("s", Duration::from_secs(1))
            .await
            .unwrap()
            .is_some(),
        "locks expire"
    );
}

#[tokio::test]
async fn the_filesystem_store_meets_the_storage_contract() {
    let app = spawn_app(Stack::Embedded).await;
    storage_contract(app.backends.store.as_ref(), async |url| {
        app.fetch(url).await
    })
    .await;
}

#[tokio::test]
async fn the_s3_store_meets_the_storage_contract() {
    let app = spawn_app(Stack::Real).await;
    storage_contract(app.backends.store.as_ref(), async |url| {
        app.fetch(url).await
    })
    .await;
}

#[tokio::test]
async fn the_s3_server_refuses_a_body_that_does_not_match_its_signed_sha256() {
    let app = spawn_app(Stack::Real).await;
    let store = app.backends.store.as_ref();
    let sent = Bytes::from_static(b"%PDF-1.4 the bytes that were hashed");
    let sha256: [u8; 32] = Sha256::digest(&sent).into();
    let altered = Bytes::from_static(b"%PDF-1.4 the bytes that went astray");
    let refused = store
        .put(
            "ws/w1/receipts/a/1.pdf",
            altered,
            &sha256,
            "application/pdf",
        )
        .await;
    assert!(refused.is_err(), "a body altered after hashing is refused");
    assert!(
        store.get("ws/w1/receipts/a/1.pdf").await.unwrap().is_none(),
        "nothing is stored"
    );
    put(
        store,
        "ws/w1/receipts/a/1.pdf",
        sent.clone(),
        "application/pdf",
    )
    .await
    .unwrap();
    assert_eq!(
        store.get("ws/w1/receipts/a/1.pdf").await.unwrap().unwrap(),
        sent
    );
}

#[tokio::test]
async fn the_embedded_state_meets_the_quota_and_catalog_contracts() {
    let app = spawn_app(Stack::Embedded).await;
    quota_contract(app.backends.quota.as_ref()).await;
    catalog_contract(app.backends.catalog.as_ref()).await;
}

#[tokio::test]
async fn the_redis_state_meets_the_quota_and_catalog_contracts() {
    let app = spawn_app(Stack::Real).await;
    quota_contract(app.backends.quota.as_ref()).await;
    catalog_contract(app.backends.catalog.as_ref()).await;
}

#[tokio::test]
async fn the_janitor_removes_temp_files_left_by_interrupted_writes_but_no_objects() {
    let app = spawn_app(Stack::Embedded).await;
    let store = app.backends.store.as_ref();
    put(
        store,
        "ws/w1/receipts/a/1.pdf",
        Bytes::from_static(b"%PDF-1.4"),
        "application/pdf",
    )
    .await
    .unwrap();
    let root = app.settings.storage.clone();
    let imaging_service::configuration::StorageSettings::Filesystem { root, .. } = root else {
        panic!("filesystem storage expected");
    };
    std::fs::write(root.join("ws/w1/receipts/a/.tmp-interrupted"), b"half").unwrap();
    assert_eq!(
        store.sweep(Duration::from_secs(3600)).await.unwrap(),
        0,
        "recent temp files are kept"
    );
    assert_eq!(store.sweep(Duration::ZERO).await.unwrap(), 1);
    assert!(!root.join("ws/w1/receipts/a/.tmp-interrupted").exists());
    assert_eq!(
        store.list("").await.unwrap().len(),
        1,
        "objects are untouched"
    );
}

#[tokio::test]
async fn the_embedded_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    {
        let state = imaging_service::state::EmbeddedState::open(&path).unwrap();
        state.set_limit("w1", 100).await.unwrap();
        state.reserve("w1", 30, 100).await.unwrap();
    }
    let state = imaging_service::state::EmbeddedState::open(&path).unwrap();
    assert_eq!(state.used("w1").await.unwrap(), 30);
    assert_eq!(state.limit("w1").await.unwrap(), Some(100));
}
