//! Uploads forwarded to storage as they arrive (kept as sent, declared at 256 KiB or more): the
//! bytes are in storage's hands before the upload ends, the object is named by a record only
//! once the upload passed its checks, and one that fails them, or is cut off, leaves nothing in
//! storage and charges nothing.

use crate::helpers::{Stack, TestApp, authed, header, messages, reason, spawn_app, target};
use imaging_e2e::fixtures::noise_png;
use imaging_proto::v1::{self, TargetKind};
use ingest_service::configuration::StorageSettings;
use std::time::Duration;

/// Temp files of writes in progress under the filesystem store's root, with their sizes.
fn temp_files(app: &TestApp) -> Vec<(std::path::PathBuf, u64)> {
    let StorageSettings::Filesystem { root, .. } = &app.settings.storage else {
        panic!("the filesystem store");
    };
    let mut found = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push((path, meta.len()));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_large_upload_reaches_storage_while_it_arrives_and_is_stored_byte_for_byte() {
    let app = spawn_app(Stack::Embedded).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = noise_png(400);
    assert!(bytes.len() > 400_000, "{}", bytes.len());
    let half = bytes.len() / 2;
    let (sender, requests) = tokio::sync::mpsc::channel(64);
    let mut parts = messages(
        header(target(TargetKind::Receipt, ""), "image/png", &bytes),
        &bytes,
        32 * 1024,
    )
    .into_iter();
    let call = {
        let mut ingest = app.ingest.clone();
        let token = token.clone();
        tokio::spawn(async move {
            ingest
                .upload_image(authed(
                    &token,
                    tokio_stream::wrappers::ReceiverStream::new(requests),
                ))
                .await
        })
    };
    // The header and the first half only.
    let mut sent = 0;
    for part in parts.by_ref() {
        if let Some(v1::upload_image_request::Part::Chunk(chunk)) = &part.part {
            sent += chunk.len();
        }
        sender.send(part).await.unwrap();
        if sent >= half {
            break;
        }
    }
    // The first half is written to storage while the client holds the rest back.
    let mut written = 0;
    for _ in 0..100 {
        written = temp_files(&app)
            .iter()
            .map(|(_, len)| *len)
            .max()
            .unwrap_or(0);
        if written >= half as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        written >= half as u64 - 32 * 1024,
        "{written} of the {sent} bytes sent are in storage before the upload ends"
    );
    assert!(app.objects().await.is_empty(), "nothing is an object yet");
    for part in parts {
        sender.send(part).await.unwrap();
    }
    drop(sender);
    let stored = call.await.unwrap().unwrap().into_inner();
    let objects = app.objects().await;
    assert_eq!(objects.len(), 1);
    assert_eq!(app.object(&objects[0].key).await, bytes);
    assert_eq!(stored.size_bytes, bytes.len() as u64);
    assert_eq!(stored.width, 400);
    assert_eq!(app.used("w1").await, bytes.len() as u64);
    assert!(temp_files(&app).is_empty());
}

#[tokio::test]
async fn a_forwarded_upload_that_fails_its_checks_leaves_nothing_in_storage() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = spawn_app(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let bytes = noise_png(400);
        let receipt = || target(TargetKind::Receipt, "");

        // A PNG cut short: every declared byte arrives, the picture does not decode.
        let cut = &bytes[..bytes.len() - 5_000];
        let refused = app.upload(&token, receipt(), "image/png", cut).await;
        let refused = refused.expect_err("a broken PNG is refused");
        assert_ne!(reason(&refused), "", "{refused:?}");

        // The bytes are not the ones the header's SHA-256 names.
        let mut wrong_sha = header(receipt(), "image/png", &bytes);
        wrong_sha.sha256 = vec![7u8; 32];
        let refused = app
            .upload_messages(&token, messages(wrong_sha, &bytes, 64 * 1024))
            .await
            .expect_err("a checksum mismatch is refused");
        assert_eq!(reason(&refused), "CHECKSUM_MISMATCH");

        // Fewer bytes than declared, and more.
        for declared in [bytes.len() as u64 + 10, bytes.len() as u64 - 10] {
            let mut wrong_size = header(receipt(), "image/png", &bytes);
            wrong_size.declared_size = declared;
            let refused = app
                .upload_messages(&token, messages(wrong_size, &bytes, 64 * 1024))
                .await
                .expect_err("a size mismatch is refused");
            assert_eq!(reason(&refused), "SIZE_MISMATCH", "declared {declared}");
        }

        // Nothing stored, nothing charged, and (the writes cut short ending in the background)
        // no temp file left.
        assert!(app.objects().await.is_empty(), "{:?}", app.objects().await);
        assert_eq!(app.used("w1").await, 0);
        if stack == Stack::Embedded {
            for _ in 0..100 {
                if temp_files(&app).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(temp_files(&app).is_empty(), "{:?}", temp_files(&app));
        }

        // The same file whole is stored.
        app.upload(&token, receipt(), "image/png", &bytes)
            .await
            .unwrap();
        let objects = app.objects().await;
        assert_eq!(objects.len(), 1);
        assert_eq!(app.object(&objects[0].key).await, bytes);
    }
}

/// The duplicates an upload was told of.
fn duplicates(response: &v1::UploadImageResponse) -> Vec<(String, v1::DuplicateMatch, u32)> {
    response
        .duplicates
        .iter()
        .map(|d| (d.image_id.clone(), d.r#match(), d.distance))
        .collect()
}

#[tokio::test]
async fn a_large_jpeg_checked_as_it_arrives_is_judged_as_the_whole_file_would_be() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = spawn_app(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let receipt = || target(TargetKind::Receipt, "");
        let bytes = imaging_e2e::fixtures::jpeg(3000, 2000);
        assert!(bytes.len() > 300_000, "{}", bytes.len());
        // Without a declared size the file is received whole, then checked.
        let whole = |bytes: &[u8]| {
            let mut header = header(receipt(), "image/jpeg", bytes);
            header.declared_size = 0;
            messages(header, bytes, 64 * 1024)
        };

        // Forwarded and checked as it arrives.
        let first = app
            .upload(&token, receipt(), "image/jpeg", &bytes)
            .await
            .unwrap();
        assert_eq!((first.width, first.height), (3000, 2000));
        assert!(first.duplicates.is_empty());
        // The same bytes, received whole: an exact match of the first.
        let again = app.upload_messages(&token, whole(&bytes)).await.unwrap();
        assert_eq!(
            duplicates(&again),
            [(first.image_id.clone(), v1::DuplicateMatch::Exact, 0)]
        );
        // The same picture in other bytes, checked as it arrives: its fingerprint is the one
        // the whole file's check took (distance 0 to both).
        let tagged = imaging_e2e::fixtures::with_orientation(&bytes, 1);
        let copy = app
            .upload(&token, receipt(), "image/jpeg", &tagged)
            .await
            .unwrap();
        let found = duplicates(&copy);
        assert!(
            found.contains(&(first.image_id.clone(), v1::DuplicateMatch::Perceptual, 0))
                && found.contains(&(again.image_id.clone(), v1::DuplicateMatch::Perceptual, 0)),
            "{found:?}"
        );

        // Damaged in the middle: refused for the reason the whole file's check gives.
        let mut damaged = bytes.clone();
        let middle = damaged.len() / 2;
        damaged[middle..middle + 4_000].fill(0xFF);
        let early = app
            .upload(&token, receipt(), "image/jpeg", &damaged)
            .await
            .expect_err("a damaged JPEG is refused");
        let late = app
            .upload_messages(&token, whole(&damaged))
            .await
            .expect_err("a damaged JPEG is refused");
        assert_eq!(reason(&early), reason(&late));
        assert_eq!(early.message(), late.message());
        assert_eq!(app.objects().await.len(), 3, "only the three good files");
    }
}
