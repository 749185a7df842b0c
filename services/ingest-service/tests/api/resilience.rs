//! Failures from outside: clients that vanish mid-stream, Redis going away and coming back,
//! and reconcile repairing a counter.

use crate::helpers::{Stack, authed, header, reason, spawn_app, target};
use imaging_e2e::fixtures::{jpeg, png};
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use ingest_service::storage::BodyDigest;
use std::time::Duration;

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_leaves_no_object_and_no_charge() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(800, 600);
    let (sender, receiver) = tokio::sync::mpsc::channel::<v1::UploadImageRequest>(4);
    let mut client = app.ingest.clone();
    let call = tokio::spawn(async move {
        client
            .upload_image(authed(
                &token,
                tokio_stream::wrappers::ReceiverStream::new(receiver),
            ))
            .await
    });
    let h = header(target(TargetKind::Receipt, ""), "image/jpeg", &bytes);
    sender
        .send(v1::UploadImageRequest {
            part: Some(Part::Header(h)),
        })
        .await
        .unwrap();
    sender
        .send(v1::UploadImageRequest {
            part: Some(Part::Chunk(bytes[..bytes.len() / 2].to_vec().into())),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.abort(); // the client goes away without finishing the stream
    drop(sender);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.objects().await.is_empty());
    assert_eq!(app.used("w1").await, 0);
}

#[tokio::test]
async fn uploads_fail_closed_while_redis_is_down_and_recover_when_it_is_back() {
    let mut app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = png(16, 16);
    app.upload(&token, target(TargetKind::Receipt, ""), "image/png", &bytes)
        .await
        .unwrap();

    app.redis.as_mut().unwrap().stop();
    let status = app
        .upload(&token, target(TargetKind::Receipt, ""), "image/png", &bytes)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(reason(&status), "QUOTA_UNAVAILABLE");
    assert!(
        !status.message().contains("127.0.0.1"),
        "no backend detail leaks: {}",
        status.message()
    );
    assert_eq!(
        app.objects().await.len(),
        1,
        "nothing written while the quota store is down"
    );

    app.redis.as_mut().unwrap().restart();
    let mut recovered = None;
    for _ in 0..50 {
        // This Redis keeps nothing on disk: the restarted one must learn the workspace again.
        let registered = app
            .registry
            .clone()
            .register_workspace(authed(
                &app.service_token(),
                v1::RegisterWorkspaceRequest {
                    workspace_id: "w1".into(),
                    quota_bytes: 0,
                    refuse_duplicates: None,
                },
            ))
            .await;
        if registered.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        match app
            .upload(&token, target(TargetKind::Receipt, ""), "image/png", &bytes)
            .await
        {
            Ok(stored) => {
                recovered = Some(stored);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(
        recovered.is_some(),
        "uploads work again without restarting the service"
    );
}

#[tokio::test]
async fn reconcile_repairs_a_corrupted_counter_from_the_records_and_never_counts_an_orphan() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = spawn_app(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let a = app
            .upload(
                &token,
                target(TargetKind::Receipt, ""),
                "image/png",
                &png(30, 30),
            )
            .await
            .unwrap();
        let b = app
            .upload(
                &token,
                target(TargetKind::Receipt, ""),
                "image/jpeg",
                &jpeg(30, 30),
            )
            .await
            .unwrap();
        // An object no record names (a writer crashed before its commit) is not usage.
        let orphan = png(12, 12);
        let digest = BodyDigest::of(&orphan);
        app.backends
            .store
            .put(
                "ws/w1/receipts/lost/x.png",
                orphan.into(),
                &digest,
                "image/png",
            )
            .await
            .unwrap();
        let used = app.backends.quota.used("w1").await.unwrap();
        assert!(
            app.backends
                .quota
                .replace_used("w1", used, 999_999)
                .await
                .unwrap()
        );
        let reconcile = || {
            ingest_service::reconcile::reconcile(
                app.backends.quota.as_ref(),
                app.backends.catalog.as_ref(),
                true,
            )
        };
        let drifts = reconcile().await.unwrap();
        assert_eq!(drifts.len(), 1, "{drifts:?}");
        assert_eq!(drifts[0].recorded, 999_999);
        assert!(drifts[0].repaired);
        assert_eq!(app.used("w1").await, a.size_bytes + b.size_bytes);
        assert!(reconcile().await.unwrap().is_empty());

        assert!(
            !app.backends.quota.replace_used("w1", 123, 0).await.unwrap(),
            "a repair never overwrites a usage that changed since it was read"
        );
        assert_eq!(app.used("w1").await, a.size_bytes + b.size_bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_burst_leaves_usage_equal_to_what_is_committed_and_reservations_lapse() {
    let app = crate::helpers::spawn_app_with(Stack::Durable, |settings| {
        settings.limits.quota.reservation_ttl_seconds = 2;
        settings.limits.admission.max_per_user = 32;
        settings.limits.admission.max_per_workspace = 32;
    })
    .await;
    let file = jpeg(1200, 900);
    let size = file.len() as u64;
    app.register_workspace("w1", size * 12).await;
    let token = app.token("u1", "w1", &[], &[]);
    let app = std::sync::Arc::new(tokio::sync::Mutex::new(app));
    let mut burst = Vec::new();
    for _ in 0..10 {
        let (app, token, file) = (app.clone(), token.clone(), file.clone());
        burst.push(tokio::spawn(async move {
            let client = app.lock().await.ingest.clone();
            let header = header(target(TargetKind::Receipt, ""), "image/jpeg", &file);
            let messages = crate::helpers::messages(header, &file, 256 * 1024);
            client
                .clone()
                .upload_image(authed(&token, tokio_stream::iter(messages)))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    app.lock().await.redis.as_mut().unwrap().stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.lock().await.redis.as_mut().unwrap().restart();
    for upload in burst {
        let _ = upload.await.unwrap();
    }
    let app = app.lock().await;
    // These reads share the service's connection to Redis, which the restart left stale: its
    // first command can fail with a broken pipe (the service answers such a call with a
    // retryable UNAVAILABLE) and the connection is made again. Wait until a read succeeds.
    for _ in 0..40 {
        if app
            .backends
            .catalog
            .image("w1", "RECEIPT:none")
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // What the records say is stored; an object no record names is an orphan, never charged.
    let mut committed = 0;
    for object in app.objects().await {
        let id = object.key.split('/').nth(3).unwrap().to_owned();
        let record = app
            .backends
            .catalog
            .image("w1", &format!("RECEIPT:{id}"))
            .await
            .unwrap();
        if record.is_some_and(|record| record.key == object.key) {
            committed += object.size;
        }
    }
    assert_eq!(
        app.used("w1").await,
        committed,
        "usage is exact, no reconcile"
    );

    // Reservations the outage left behind lapse: the quota fills up to its limit again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fits = (size * 12 - committed) / size;
    let mut stored = 0;
    for _ in 0..fits {
        app.upload(&token, target(TargetKind::Receipt, ""), "image/jpeg", &file)
            .await
            .expect("room the lapsed reservations gave back");
        stored += 1;
    }
    assert_eq!(stored, fits);
    assert!(app.used("w1").await <= size * 12);
}

#[tokio::test]
async fn the_janitor_removes_orphaned_objects_past_the_grace_period_and_nothing_else() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = spawn_app(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let kept = app
            .upload(
                &token,
                target(TargetKind::Receipt, ""),
                "image/png",
                &png(20, 20),
            )
            .await
            .unwrap();
        // What a writer that crashed before its commit would leave.
        let orphan = "ws/w1/receipts/lost1/abc.png";
        let bytes = png(10, 10);
        let digest = BodyDigest::of(&bytes);
        app.backends
            .store
            .put(orphan, bytes.into(), &digest, "image/png")
            .await
            .unwrap();

        let young = ingest_service::janitor::remove_orphans(
            app.backends.store.as_ref(),
            app.backends.catalog.as_ref(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
        assert!(
            young.is_empty(),
            "work that may be in progress is left alone"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let removed = ingest_service::janitor::remove_orphans(
            app.backends.store.as_ref(),
            app.backends.catalog.as_ref(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(removed, vec![orphan.to_owned()]);
        let left: Vec<String> = app.objects().await.into_iter().map(|o| o.key).collect();
        assert_eq!(left, vec![kept.path.clone()]);
        assert_eq!(app.used("w1").await, kept.size_bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_s3_server_stopped_mid_burst_gives_503s_and_leaves_no_orphan_and_no_leaked_quota() {
    let mut app = crate::helpers::spawn_app_with(Stack::Real, |settings| {
        settings.limits.admission.max_per_user = 32;
        settings.limits.admission.max_per_workspace = 32;
    })
    .await;
    let file = jpeg(600, 400);
    let size = file.len() as u64;
    app.register_workspace("w1", size * 20).await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut client = app.ingest.clone();

    // Eight uploads are half sent, then the S3 server dies; four more start just as it does.
    let mut waiting = Vec::new();
    for _ in 0..8 {
        waiting.push(crate::lifecycle::half_sent_upload(&mut client, &token, &file).await);
    }
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let (client, token, file) = (client.clone(), token.clone(), file.clone());
            tokio::spawn(async move {
                let h = header(target(TargetKind::Receipt, ""), "image/jpeg", &file);
                client
                    .clone()
                    .upload_image(authed(
                        &token,
                        tokio_stream::iter(crate::helpers::messages(h, &file, 16 * 1024)),
                    ))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.s3.as_mut().unwrap().stop();
    let mut refused = 0;
    let mut stored = Vec::new();
    for (sender, call) in waiting {
        let rest = file[file.len() / 2..].to_vec();
        sender
            .send(v1::UploadImageRequest {
                part: Some(Part::Chunk(rest.into())),
            })
            .await
            .unwrap();
        drop(sender);
        let status = call.await.unwrap().expect_err("storage is down");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(reason(&status), "STORAGE_UNAVAILABLE");
        refused += 1;
    }
    for call in racing {
        match call.await.unwrap() {
            Ok(response) => stored.push(response.into_inner()),
            Err(status) => {
                assert_eq!(reason(&status), "STORAGE_UNAVAILABLE", "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 8);
    app.s3.as_mut().unwrap().restart().await;

    // A write whose reply the dying server never sent is an orphan only the janitor may take
    // (no record names it); every acknowledged upload stays.
    ingest_service::janitor::remove_orphans(
        app.backends.store.as_ref(),
        app.backends.catalog.as_ref(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let objects = app.objects().await;
    assert_eq!(objects.len(), stored.len(), "{objects:?}");
    for done in &stored {
        assert_eq!(app.object(&done.path).await, file);
    }
    assert_eq!(app.used("w1").await, size * stored.len() as u64);

    // Nothing the failed uploads reserved is still held: the workspace fills to its limit at
    // once, without waiting for reservations to lapse.
    for _ in stored.len()..20 {
        app.upload(&token, target(TargetKind::Receipt, ""), "image/jpeg", &file)
            .await
            .expect("the failed uploads gave their reservations back");
    }
    let over = app
        .upload(&token, target(TargetKind::Receipt, ""), "image/jpeg", &file)
        .await
        .unwrap_err();
    assert_eq!(reason(&over), "QUOTA_EXCEEDED");
    assert_eq!(app.used("w1").await, size * 20);
}
