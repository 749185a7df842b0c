//! The storage contract: one named test per behaviour, run against every object store built
//! directly (the filesystem store with its file server, and the S3 store against a real S3
//! server over HTTP with SigV4).

use bytes::Bytes;
use imaging_e2e::{MotoServer, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};
use ingest_service::configuration::PayloadCheck;
use ingest_service::storage::signed_url::UrlSigner;
use ingest_service::storage::{BodyDigest, FsStore, ObjectStore, S3Store, StorageError, Streamed};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

/// A store and what keeps its servers alive.
pub struct Backend {
    pub store: Arc<dyn ObjectStore>,
    _keep: Box<dyn std::any::Any + Send>,
}

/// The filesystem store in a temp dir, its signed URLs served on a free port.
pub async fn filesystem() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let store = Arc::new(
        FsStore::new(dir.path().join("objects"), UrlSigner::new(b"k"), public)
            .await
            .unwrap(),
    );
    let server = tokio::spawn(
        axum::serve(
            listener,
            ingest_service::storage::files::router(store.clone()),
        )
        .into_future(),
    );
    Backend {
        store,
        _keep: Box::new((dir, AbortOnDrop(server))),
    }
}

/// The S3 store against an in-process S3 server (over `http`, so bodies are signed).
pub async fn s3() -> Backend {
    s3_with(PayloadCheck::Auto).await
}

/// The S3 store proving its bodies by a signed CRC32C header, as over `https`.
pub async fn s3_checksum() -> Backend {
    s3_with(PayloadCheck::Checksum).await
}

async fn s3_with(payload: PayloadCheck) -> Backend {
    let server = S3Server::start().await;
    let store = s3_store(&server.endpoint).with_payload_check(payload);
    Backend {
        store: Arc::new(store),
        _keep: Box::new(server),
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes `bytes` with their digests, as the service does.
async fn put(store: &dyn ObjectStore, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
    store
        .put(
            key,
            Bytes::copy_from_slice(bytes),
            &BodyDigest::of(bytes),
            "application/octet-stream",
        )
        .await
}

fn pattern(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

async fn stored_bytes_come_back_byte_for_byte(backend: &Backend) {
    let bytes = pattern(300_000);
    put(backend.store.as_ref(), "ws/w1/receipts/a/1.jpg", &bytes)
        .await
        .unwrap();
    let got = backend
        .store
        .get("ws/w1/receipts/a/1.jpg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
}

async fn a_missing_object_reads_as_none(backend: &Backend) {
    assert!(backend.store.get("ws/w1/none").await.unwrap().is_none());
}

async fn a_listing_gives_the_keys_and_sizes_under_a_prefix_in_order(backend: &Backend) {
    let store = backend.store.as_ref();
    put(store, "ws/w1/receipts/b/2.pdf", b"%PDF-1.4")
        .await
        .unwrap();
    put(store, "ws/w1/receipts/a/1.jpg", &pattern(1000))
        .await
        .unwrap();
    put(store, "ws/w2/invoices/c/3.png", b"png").await.unwrap();
    let listed = store.list("ws/w1/").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|e| (e.key.as_str(), e.size)).collect();
    assert_eq!(
        keys,
        vec![
            ("ws/w1/receipts/a/1.jpg", 1000),
            ("ws/w1/receipts/b/2.pdf", 8)
        ]
    );
}

async fn a_second_put_replaces_the_whole_object(backend: &Backend) {
    let store = backend.store.as_ref();
    put(store, "ws/w1/receipts/b/2.pdf", &pattern(5000))
        .await
        .unwrap();
    put(store, "ws/w1/receipts/b/2.pdf", b"%PDF-1.7 new")
        .await
        .unwrap();
    let got = store.get("ws/w1/receipts/b/2.pdf").await.unwrap().unwrap();
    assert_eq!(got.as_ref(), b"%PDF-1.7 new");
}

async fn an_expiring_url_serves_the_object_and_opens_no_other(backend: &Backend) {
    let store = backend.store.as_ref();
    let bytes = pattern(70_000);
    put(store, "ws/w1/receipts/a/1.jpg", &bytes).await.unwrap();
    put(store, "ws/w1/receipts/b/2.pdf", b"%PDF-1.4")
        .await
        .unwrap();
    let url = store
        .url("ws/w1/receipts/a/1.jpg", Duration::from_secs(60))
        .await
        .unwrap();
    let (status, body) = fetch(&url).await;
    assert_eq!(status, 200, "{url}");
    assert_eq!(body, bytes);
    let tampered = url.replace("a/1.jpg", "b/2.pdf");
    assert_ne!(
        fetch(&tampered).await.0,
        200,
        "a URL signed for one object opens no other"
    );
}

async fn a_deleted_object_is_gone_and_deleting_again_is_no_error(backend: &Backend) {
    let store = backend.store.as_ref();
    put(store, "ws/w1/receipts/a/1.jpg", b"x").await.unwrap();
    store.delete("ws/w1/receipts/a/1.jpg").await.unwrap();
    store.delete("ws/w1/receipts/a/1.jpg").await.unwrap();
    assert!(store.get("ws/w1/receipts/a/1.jpg").await.unwrap().is_none());
    assert!(store.list("ws/").await.unwrap().is_empty());
}

async fn keys_that_could_escape_the_store_are_refused(backend: &Backend) {
    let store = backend.store.as_ref();
    for key in ["../escape", "/abs", "ws/../x", "a b"] {
        let refused = put(store, key, b"x").await;
        assert!(
            matches!(refused, Err(StorageError::InvalidKey(_))),
            "{key}: {refused:?}"
        );
    }
}

/// `put_appended`, as the service calls it.
async fn append(
    store: &dyn ObjectStore,
    key: &str,
    base: &str,
    base_len: usize,
    tail: &[u8],
) -> Result<(), StorageError> {
    store
        .put_appended(
            key,
            base,
            base_len as u64,
            Bytes::copy_from_slice(tail),
            "application/pdf",
        )
        .await
}

/// Appends to a base of `base_len` bytes twice (a chain of appended objects), checking what
/// each object reads, lists and serves.
async fn appends_to(backend: &Backend, base_len: u32) {
    let store = backend.store.as_ref();
    let base = pattern(base_len);
    put(store, "ws/w1/reports/r/1.pdf", &base).await.unwrap();
    let tail = b"%% an increment\n".repeat(100);
    append(
        store,
        "ws/w1/reports/r/2.pdf",
        "ws/w1/reports/r/1.pdf",
        base.len(),
        &tail,
    )
    .await
    .unwrap();
    let mut expected = base.clone();
    expected.extend_from_slice(&tail);
    append(
        store,
        "ws/w1/reports/r/3.pdf",
        "ws/w1/reports/r/2.pdf",
        expected.len(),
        b"more",
    )
    .await
    .unwrap();
    let mut third = expected.clone();
    third.extend_from_slice(b"more");
    // Each append is an object of its own; the base is unchanged and can go.
    store.delete("ws/w1/reports/r/1.pdf").await.unwrap();
    store.delete("ws/w1/reports/r/2.pdf").await.unwrap();
    let got = store.get("ws/w1/reports/r/3.pdf").await.unwrap().unwrap();
    assert_eq!(got.len(), third.len());
    assert!(got.as_ref() == third.as_slice(), "the base then the tails");
    let listed = store.list("ws/w1/reports/").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|entry| (entry.key.as_str(), entry.size))
            .collect::<Vec<_>>(),
        vec![("ws/w1/reports/r/3.pdf", third.len() as u64)]
    );
    let url = store
        .url("ws/w1/reports/r/3.pdf", Duration::from_secs(60))
        .await
        .unwrap();
    let (status, body) = fetch(&url).await;
    assert_eq!(status, 200);
    assert!(body == third, "served as one object");
    store.delete("ws/w1/reports/r/3.pdf").await.unwrap();
    assert!(store.get("ws/w1/reports/r/3.pdf").await.unwrap().is_none());
    assert!(store.list("ws/").await.unwrap().is_empty());
}

async fn an_appended_object_is_its_base_then_the_new_bytes(backend: &Backend) {
    appends_to(backend, 70_000).await;
}

async fn a_base_past_the_multipart_minimum_is_appended_without_being_sent_again(backend: &Backend) {
    // Over S3's 5 MiB part minimum: the server copies the base itself (UploadPartCopy).
    appends_to(backend, 6 * 1024 * 1024 + 7).await;
}

async fn an_append_to_a_base_that_is_gone_or_changed_writes_nothing(backend: &Backend) {
    let store = backend.store.as_ref();
    for base_len in [1000, 6 * 1024 * 1024] {
        let gone = append(
            store,
            "ws/w1/reports/r/2.pdf",
            "ws/w1/reports/r/1.pdf",
            base_len,
            b"x",
        )
        .await;
        assert!(
            matches!(gone, Err(StorageError::BaseChanged(_))),
            "{gone:?}"
        );
    }
    put(store, "ws/w1/reports/r/1.pdf", &pattern(1000))
        .await
        .unwrap();
    let changed = append(
        store,
        "ws/w1/reports/r/2.pdf",
        "ws/w1/reports/r/1.pdf",
        999,
        b"x",
    )
    .await;
    assert!(
        matches!(changed, Err(StorageError::BaseChanged(_))),
        "{changed:?}"
    );
    assert!(store.get("ws/w1/reports/r/2.pdf").await.unwrap().is_none());
    assert_eq!(store.list("ws/").await.unwrap().len(), 1);
}

/// Streams `bytes` to `key` in `piece`-byte messages as announced `size`; with `end`, says
/// they were all sent. Returns the write's result.
async fn stream(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    size: u64,
    bytes: &[u8],
    piece: usize,
    end: bool,
) -> Result<(), StorageError> {
    let (sender, body) = tokio::sync::mpsc::channel(4);
    let write = {
        let (store, key) = (store.clone(), key.to_owned());
        tokio::spawn(async move {
            store
                .put_streamed(&key, size, "image/jpeg", body, Duration::from_secs(30))
                .await
        })
    };
    for chunk in bytes.chunks(piece) {
        if sender
            .send(Streamed::Data(Bytes::copy_from_slice(chunk)))
            .await
            .is_err()
        {
            break;
        }
    }
    if end {
        let _ = sender.send(Streamed::End).await;
    }
    drop(sender);
    write.await.unwrap()
}

async fn a_streamed_write_stores_every_byte_once_it_is_ended(backend: &Backend) {
    // Three whole 128 KiB frames and part of a fourth, sent in pieces that straddle them.
    let bytes = pattern(3 * 131_072 + 12_345);
    let key = "ws/w1/receipts/s/1.jpg";
    stream(
        &backend.store,
        key,
        bytes.len() as u64,
        &bytes,
        50_000,
        true,
    )
    .await
    .unwrap();
    let got = backend.store.get(key).await.unwrap().unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());
    // And a small one, in one piece.
    stream(&backend.store, key, 5, b"12345", 100, true)
        .await
        .unwrap();
    assert_eq!(
        backend.store.get(key).await.unwrap().unwrap().as_ref(),
        b"12345"
    );
}

async fn a_streamed_write_that_is_not_ended_or_not_whole_stores_nothing(backend: &Backend) {
    let bytes = pattern(300_000);
    let size = bytes.len() as u64;
    let store = &backend.store;
    // Every byte sent, but never accepted: the upload failed its checks.
    let key = "ws/w1/receipts/s/unended.jpg";
    assert!(
        stream(store, key, size, &bytes, 65_536, false)
            .await
            .is_err()
    );
    assert!(store.get(key).await.unwrap().is_none());
    // Fewer bytes than announced, then ended.
    let key = "ws/w1/receipts/s/short.jpg";
    assert!(
        stream(store, key, size, &bytes[..200_000], 65_536, true)
            .await
            .is_err()
    );
    assert!(store.get(key).await.unwrap().is_none());
    // More bytes than announced.
    let key = "ws/w1/receipts/s/long.jpg";
    assert!(
        stream(store, key, size - 1, &bytes, 65_536, true)
            .await
            .is_err()
    );
    assert!(store.get(key).await.unwrap().is_none());
    // Nothing was left behind under any of their names.
    let listed: Vec<String> = store
        .list("ws/w1/receipts/s/")
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.key)
        .collect();
    assert!(listed.is_empty(), "{listed:?}");
}

async fn the_store_answers_its_health_check(backend: &Backend) {
    backend.store.check().await.unwrap();
}

macro_rules! storage_contract {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                contract!(super::$backend =>
                    stored_bytes_come_back_byte_for_byte,
                    a_missing_object_reads_as_none,
                    a_listing_gives_the_keys_and_sizes_under_a_prefix_in_order,
                    a_second_put_replaces_the_whole_object,
                    an_expiring_url_serves_the_object_and_opens_no_other,
                    a_deleted_object_is_gone_and_deleting_again_is_no_error,
                    keys_that_could_escape_the_store_are_refused,
                    an_appended_object_is_its_base_then_the_new_bytes,
                    a_base_past_the_multipart_minimum_is_appended_without_being_sent_again,
                    an_append_to_a_base_that_is_gone_or_changed_writes_nothing,
                    the_store_answers_its_health_check,
                    a_streamed_write_stores_every_byte_once_it_is_ended,
                    a_streamed_write_that_is_not_ended_or_not_whole_stores_nothing,
                );
            }
        )*
    };
}

storage_contract!(filesystem, s3, s3_checksum);

/// PUTs other bytes under `key` than those whose digests it sends (those of `sent`).
async fn put_altered(store: &dyn ObjectStore, key: &str, sent: &[u8]) -> Result<(), StorageError> {
    let altered = Bytes::from_static(b"%PDF-1.4 the bytes that went astray");
    store
        .put(key, altered, &BodyDigest::of(sent), "application/pdf")
        .await
}

#[tokio::test]
async fn the_s3_server_refuses_a_body_that_does_not_match_its_signed_sha256() {
    let backend = s3().await;
    let store = backend.store.as_ref();
    let sent = Bytes::from_static(b"%PDF-1.4 the bytes that were hashed");
    let refused = put_altered(store, "ws/w1/receipts/a/1.pdf", &sent).await;
    assert!(refused.is_err(), "a body altered after hashing is refused");
    assert!(store.get("ws/w1/receipts/a/1.pdf").await.unwrap().is_none());
    put(store, "ws/w1/receipts/a/1.pdf", &sent).await.unwrap();
    assert_eq!(
        store.get("ws/w1/receipts/a/1.pdf").await.unwrap().unwrap(),
        sent
    );
}

#[tokio::test]
async fn the_s3_server_refuses_a_body_that_does_not_match_its_signed_crc32c() {
    let backend = s3_checksum().await;
    let store = backend.store.as_ref();
    assert!(store.checks_crc32c());
    let sent = Bytes::from_static(b"%PDF-1.4 the bytes that were checksummed");
    let refused = put_altered(store, "ws/w1/receipts/a/1.pdf", &sent).await;
    // (This test server writes the object before it compares the checksum, where S3 stores
    // nothing; either way the write fails, so the service never records the key.)
    assert!(
        refused.is_err(),
        "a body altered after its CRC32C was taken is refused"
    );
    put(store, "ws/w1/receipts/a/1.pdf", &sent).await.unwrap();
    assert_eq!(
        store.get("ws/w1/receipts/a/1.pdf").await.unwrap().unwrap(),
        sent
    );
    // Without a CRC32C from the caller, the store takes it from the body it sends.
    let digest = BodyDigest {
        crc32c: None,
        ..BodyDigest::of(&sent)
    };
    store
        .put(
            "ws/w1/receipts/b/1.pdf",
            sent.clone(),
            &digest,
            "application/pdf",
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("ws/w1/receipts/b/1.pdf").await.unwrap().unwrap(),
        sent
    );
}

#[tokio::test]
async fn the_janitor_removes_temp_files_left_by_interrupted_writes_but_no_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let store = FsStore::new(&root, UrlSigner::new(b"k"), "http://unused")
        .await
        .unwrap();
    put(&store, "ws/w1/receipts/a/1.pdf", b"%PDF-1.4")
        .await
        .unwrap();
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

/// A bucket client written elsewhere (`rust-s3`) on the server at `endpoint`.
fn other_client(endpoint: &str) -> Box<::s3::Bucket> {
    let credentials =
        ::s3::creds::Credentials::new(Some(S3_ACCESS_KEY), Some(S3_SECRET_KEY), None, None, None)
            .unwrap();
    let region = ::s3::Region::Custom {
        region: "us-east-1".to_owned(),
        endpoint: endpoint.to_owned(),
    };
    ::s3::Bucket::new(S3_BUCKET, region, credentials)
        .unwrap()
        .with_path_style()
}

fn s3_store(endpoint: &str) -> S3Store {
    S3Store::new(
        endpoint,
        "",
        "us-east-1",
        S3_BUCKET,
        S3_ACCESS_KEY,
        S3_SECRET_KEY,
    )
    .unwrap()
}

#[tokio::test]
async fn the_s3_janitor_aborts_multipart_uploads_left_open() {
    // moto's server: `s3s-fs` cannot list multipart uploads (it answers 501).
    let server = MotoServer::start();
    let store = s3_store(&server.endpoint);
    let other = other_client(&server.endpoint);
    // A writer that died after starting a multipart upload (an append to a large report).
    let open = other
        .initiate_multipart_upload("ws/w1/reports/r/9.pdf", "application/pdf")
        .await
        .unwrap();
    put(&store, "ws/w1/reports/r/8.pdf", b"%PDF-1.4 kept")
        .await
        .unwrap();
    // (moto reports every upload as started in 2010, so that recent uploads are kept is the
    // unit tests' to show.)
    assert_eq!(store.sweep(Duration::from_secs(3600)).await.unwrap(), 1);
    assert_eq!(
        store.sweep(Duration::ZERO).await.unwrap(),
        0,
        "nothing left"
    );
    let left: usize = other
        .list_multiparts_uploads(None, None)
        .await
        .unwrap()
        .iter()
        .map(|page| page.uploads.len())
        .sum();
    assert_eq!(left, 0, "upload {} was aborted", open.upload_id);
    assert_eq!(
        store.list("").await.unwrap().len(),
        1,
        "objects are untouched"
    );
}

#[tokio::test]
async fn an_s3_listing_of_more_keys_than_a_page_holds_gives_every_key_once() {
    let server = S3Server::start().await;
    let store = Arc::new(s3_store(&server.endpoint));
    // More than the 1,000 keys of one ListObjectsV2 page, written sixteen at a time.
    let keys: Vec<String> = (0..1_050)
        .map(|n| format!("ws/w1/receipts/r{n:04}/1.jpg"))
        .collect();
    futures::future::try_join_all(keys.chunks(16).map(|chunk| {
        let store = store.clone();
        async move {
            for key in chunk {
                put(store.as_ref(), key, key.as_bytes()).await?;
            }
            Ok::<_, StorageError>(())
        }
    }))
    .await
    .unwrap();
    put(store.as_ref(), "ws/w2/receipts/a/1.jpg", b"other")
        .await
        .unwrap();
    let listed = store.list("ws/w1/").await.unwrap();
    let listed_keys: Vec<&str> = listed.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(
        listed_keys,
        keys.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        listed
            .iter()
            .all(|entry| entry.size == entry.key.len() as u64)
    );
    assert!(listed.iter().all(|entry| entry.modified.is_some()));
}
