//! Defenses that hold by construction, one test per attack: memory held while a step runs,
//! time bounded per upload, authorization read from the image record, exact scopes, durable
//! idempotency claims, documented reasons reachable, control frames that are not activity and
//! connection shares per client address.

use crate::helpers::{Stack, TestApp, authed, messages, reason, spawn_app_with, target};
use crate::process::ServiceProcess;
use imaging_e2e::fixtures::{
    assert_qpdf_accepts, jpeg, pdf, pdf_inherited_values, pdf_with_startxref_after_eof,
    pdfinfo_pages, pypdf_pages,
};
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use std::time::{Duration, Instant};

fn chunk(bytes: &[u8]) -> v1::UploadImageRequest {
    v1::UploadImageRequest {
        part: Some(Part::Chunk(bytes.to_vec().into())),
    }
}

fn header_only(target: v1::Target, content_type: &str) -> v1::UploadImageRequest {
    v1::UploadImageRequest {
        part: Some(Part::Header(v1::UploadHeader {
            target: Some(target),
            content_type: content_type.into(),
            ..Default::default()
        })),
    }
}

/// Opens an upload as `token` (with idempotency key `key`, if any) that has sent its header;
/// what else it sends goes through the returned sender.
async fn open_upload(
    app: &TestApp,
    token: &str,
    key: &str,
) -> (
    tokio::sync::mpsc::Sender<v1::UploadImageRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<v1::UploadImageResponse>, tonic::Status>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut client = app.ingest.clone();
    let request = authed(token, tokio_stream::wrappers::ReceiverStream::new(receiver));
    let call = tokio::spawn(async move { client.upload_image(request).await });
    let mut header = header_only(target(TargetKind::Receipt, ""), "image/jpeg");
    if let Some(Part::Header(h)) = &mut header.part {
        h.idempotency_key = key.into();
    }
    sender.send(header).await.unwrap();
    (sender, call)
}

// ---- 1. Memory enforced while work runs -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_page_tree_multiplies_inherited_values_is_stored_and_the_service_stays_small()
 {
    let service = ServiceProcess::start().await;
    let channel = service.channel().await;
    service.register_workspace(&channel, "acme").await;
    let token = service.token("alice", "acme", &[]);
    let mut ingest = v1::image_ingest_client::ImageIngestClient::new(channel.clone())
        .max_encoding_message_size(16 << 20);
    let photo = jpeg(64, 48);
    let first = ingest
        .upload_image(authed(
            &token,
            tokio_stream::iter(messages(
                imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/jpeg", &photo),
                &photo,
                64 * 1024,
            )),
        ))
        .await
        .unwrap()
        .into_inner();
    let before = service.peak_rss_kib();
    // 1,999 pages (the most a report may add to its first) inheriting a 200,000-number MediaBox
    // and 50,000 resources.
    let bomb = pdf_inherited_values(1999, 200_000);
    let appended = ingest
        .upload_image(authed(
            &token,
            tokio_stream::iter(messages(
                imaging_e2e::service::header(
                    target(TargetKind::Receipt, &first.image_id),
                    "application/pdf",
                    &bomb,
                ),
                &bomb,
                64 * 1024,
            )),
        ))
        .await
        .expect("the pages are written by reference: the append is small")
        .into_inner();
    assert_eq!(appended.page_count, 2000);
    let grown_mib = (service.peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < 256,
        "the append grew the service by {grown_mib} MiB"
    );
    // Alive, and the stored report reads the same everywhere.
    let stored = read_parts(&service.data.path().join("objects").join(&appended.path)).unwrap();
    assert_qpdf_accepts(&stored);
    assert_eq!(pdfinfo_pages(&stored), 2000);
}

/// A report stored as a parts directory (`<key>.parts/000000`, ...) read whole.
fn read_parts(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    if let Ok(bytes) = std::fs::read(path) {
        return Ok(bytes);
    }
    let dir = std::path::PathBuf::from(format!("{}.parts", path.display()));
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut out = Vec::new();
    for name in names {
        out.extend(std::fs::read(name)?);
    }
    Ok(out)
}

// ---- 2. Time bounded per upload ---------------------------------------------------------------

async fn trickle_is_refused(empty: bool) {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.upload.rate_grace_seconds = 1;
        settings.limits.upload.min_bytes_per_second = 8192;
        settings.limits.upload.idle_seconds = 30;
    })
    .await;
    let token = app.token("mallory", "w1", &[], &[]);
    let (sender, call) = open_upload(&app, &token, "").await;
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let soi = [0xFFu8, 0xD8, 0xFF];
        for n in 0..60 {
            let part = if empty {
                &[][..]
            } else {
                &soi[n % 3..n % 3 + 1]
            };
            if sender.send(chunk(part)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let status = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("a trickle is refused by its rate, not waited out")
        .unwrap()
        .unwrap_err();
    assert_eq!(reason(&status), "UPLOAD_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));
    trickle.abort();
    assert!(app.objects().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_sending_a_byte_at_a_time_is_refused_by_its_rate() {
    trickle_is_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_sending_empty_chunks_is_refused_by_its_rate() {
    trickle_is_refused(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_past_its_total_deadline_is_refused_however_steady() {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.upload.deadline_seconds = 2;
        settings.limits.upload.min_bytes_per_second = 0;
    })
    .await;
    let token = app.token("mallory", "w1", &[], &[]);
    let (sender, call) = open_upload(&app, &token, "").await;
    let steady = tokio::spawn(async move {
        for _ in 0..100 {
            if sender.send(chunk(&[0u8; 1024])).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let status = tokio::time::timeout(Duration::from_secs(8), call)
        .await
        .expect("the deadline ends it")
        .unwrap()
        .unwrap_err();
    assert_eq!(reason(&status), "UPLOAD_TIMEOUT");
    steady.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_hold_upload_slots_like_any_upload() {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.admission.max_per_user = 2;
        settings.limits.upload.idle_seconds = 5;
    })
    .await;
    let token = app.token("mallory", "w1", &[], &[]);
    let photo = jpeg(32, 24);
    let mut header =
        imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/jpeg", &photo);
    header.idempotency_key = "K".into();
    app.upload_messages(&token, messages(header, &photo, 1024))
        .await
        .unwrap();
    // Three slow replays of that key: two hold the user's slots, the third is refused.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(open_upload(&app, &token, "K").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (third_sender, third) = open_upload(&app, &token, "K").await;
    let status = tokio::time::timeout(Duration::from_secs(4), third)
        .await
        .expect("refused at once")
        .unwrap()
        .unwrap_err();
    assert_eq!(reason(&status), "TOO_MANY_UPLOADS");
    drop((held, third_sender));
}

// ---- 5. Authorization from the image record ---------------------------------------------------

async fn removing_a_target_removes_its_image(stack: Stack) {
    let app = spawn_app_with(stack, |_| {}).await;
    let entry = target(TargetKind::ExpenseEntry, "E1");
    let alice = app.token("alice", "w1", &[], &[]);
    let bob = app.token("bob", "w1", &[], &[]);
    let carol = app.token("carol", "w2", &[], &[]);
    app.register_target(entry.clone(), "w1", "alice").await;
    let photo = jpeg(64, 48);
    app.upload(&alice, entry.clone(), "image/jpeg", &photo)
        .await
        .unwrap();
    assert!(app.used("w1").await > 0);

    let removed = app
        .registry
        .clone()
        .remove_target(authed(
            &app.service_token(),
            v1::RemoveTargetRequest {
                target: Some(entry.clone()),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    assert_eq!(app.used("w1").await, 0, "the image's bytes are given back");
    assert!(app.objects().await.is_empty(), "and its object is gone");

    // Registered again in the same workspace for bob: alice's image is not his to read.
    app.register_target(entry.clone(), "w1", "bob").await;
    let status = app.get_image(&bob, entry.clone()).await.unwrap_err();
    assert_eq!(reason(&status), "IMAGE_NOT_FOUND");
    assert!(app.delete_image(&bob, entry.clone()).await.is_err());
    app.upload(&bob, entry.clone(), "image/jpeg", &photo)
        .await
        .expect("bob's own upload");
    let mine = app.get_image(&bob, entry.clone()).await.unwrap();
    assert_eq!(mine.owner, "bob");

    // Removed again and registered in another workspace: a clean start there, nothing left
    // charged to the first.
    app.registry
        .clone()
        .remove_target(authed(
            &app.service_token(),
            v1::RemoveTargetRequest {
                target: Some(entry.clone()),
            },
        ))
        .await
        .unwrap();
    app.register_target(entry.clone(), "w2", "carol").await;
    app.upload(&carol, entry.clone(), "image/jpeg", &photo)
        .await
        .expect("stored in the other workspace");
    assert_eq!(app.used("w1").await, 0);
    assert_eq!(app.used("w2").await, photo.len() as u64);
    assert_eq!(app.objects().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_target_removes_its_image_embedded() {
    removing_a_target_removes_its_image(Stack::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_target_removes_its_image_redis() {
    removing_a_target_removes_its_image(Stack::Real).await;
}

// ---- 6. Exact scopes --------------------------------------------------------------------------

#[tokio::test]
async fn a_service_token_reads_usage_only_in_its_own_workspace() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let other = app.token("billing", "w2", &["service"], &[]);
    let status = app.usage(&other, "w1").await.unwrap_err();
    assert_eq!(reason(&status), "PERMISSION_DENIED");
    app.usage(&other, "w2").await.expect("its own workspace");
    app.usage(&app.service_token(), "w1")
        .await
        .expect("a token for every workspace");
}

#[tokio::test]
async fn an_admin_acting_for_two_users_with_one_key_makes_two_receipts() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let admin = app.token("boss", "w1", &["company_admin"], &[]);
    let photo = jpeg(64, 48);
    let mut ids = Vec::new();
    for owner in ["alice", "bob"] {
        let mut header =
            imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/jpeg", &photo);
        header.idempotency_key = "K".into();
        header.owner = owner.into();
        let stored = app
            .upload_messages(&admin, messages(header, &photo, 1024))
            .await
            .unwrap();
        ids.push(stored.image_id);
    }
    assert_ne!(ids[0], ids[1], "bob's receipt is not alice's replayed");
    let bob = app.token("bob", "w1", &[], &[]);
    let listed: Vec<String> = app
        .list(&bob, "", 10, "")
        .await
        .unwrap()
        .images
        .into_iter()
        .map(|image| image.image_id)
        .collect();
    assert_eq!(listed, vec![ids[1].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_never_stores_two_images_even_when_locks_expire_at_once() {
    let app = spawn_app_with(Stack::Real, |settings| {
        settings.server.lock_ttl_millis = 1;
    })
    .await;
    let token = app.token("alice", "w1", &[], &[]);
    let photo = jpeg(256, 192);
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut header =
            imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/jpeg", &photo);
        header.idempotency_key = "same".into();
        let sent = messages(header, &photo, 4096);
        let mut client = app.ingest.clone();
        let token = token.clone();
        calls.push(tokio::spawn(async move {
            client
                .upload_image(authed(&token, tokio_stream::iter(sent)))
                .await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(stored) => {
                ids.insert(stored.into_inner().image_id);
            }
            Err(status) => assert_eq!(reason(&status), "BUSY"),
        }
    }
    assert_eq!(ids.len(), 1, "one receipt under one key: {ids:?}");
    assert_eq!(app.objects().await.len(), 1);
}

// ---- 7. Reports read the same everywhere ------------------------------------------------------

#[tokio::test]
async fn a_report_whose_first_pdf_hides_a_startxref_after_its_eof_reads_the_same_everywhere() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let report = target(TargetKind::Report, "R1");
    app.register_target(report.clone(), "w1", "alice").await;
    let alice = app.token("alice", "w1", &[], &[]);
    let first = pdf_with_startxref_after_eof(2);
    app.upload(&alice, report.clone(), "application/pdf", &first)
        .await
        .unwrap();
    let stored = app
        .upload(&alice, report.clone(), "application/pdf", &pdf(1))
        .await
        .unwrap();
    assert_eq!(stored.page_count, 3);
    let bytes = app.object(&stored.path).await;
    assert_qpdf_accepts(&bytes);
    assert_eq!(pdfinfo_pages(&bytes), 3);
}

#[tokio::test]
async fn a_report_started_by_a_jpeg_has_every_page_in_pypdf() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let report = target(TargetKind::Report, "R1");
    app.register_target(report.clone(), "w1", "alice").await;
    let alice = app.token("alice", "w1", &[], &[]);
    app.upload(&alice, report.clone(), "image/jpeg", &jpeg(64, 48))
        .await
        .unwrap();
    let stored = app
        .upload(&alice, report.clone(), "application/pdf", &pdf(2))
        .await
        .unwrap();
    let bytes = app.object(&stored.path).await;
    assert_eq!(pypdf_pages(&bytes), 3);
    assert_eq!(pdfinfo_pages(&bytes), 3);
}

// ---- 8. Documented reasons stay reachable -----------------------------------------------------

#[tokio::test]
async fn a_chunk_over_the_limit_is_chunk_too_large_whatever_its_size() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let token = app.token("alice", "w1", &[], &[]);
    let limit = app.settings.limits.upload.max_chunk_bytes;
    for size in [limit + 1, 2 * 1024 * 1024, 8 * 1024 * 1024] {
        let sent = vec![
            header_only(target(TargetKind::Receipt, ""), "image/jpeg"),
            chunk(&vec![0xFF; size]),
        ];
        let status = app.upload_messages(&token, sent).await.unwrap_err();
        assert_eq!(reason(&status), "CHUNK_TOO_LARGE", "a {size}-byte chunk");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}

// ---- 2. Connections: control frames are not activity; a share per address --------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_only_answers_pings_is_closed_after_the_idle_timeout() {
    let service = ServiceProcess::start_with(&[
        ("APP__SERVER__IDLE_TIMEOUT_SECONDS", "2"),
        ("APP__SERVER__KEEPALIVE_INTERVAL_SECONDS", "1"),
        ("APP__SERVER__KEEPALIVE_TIMEOUT_SECONDS", "5"),
    ])
    .await;
    let tcp = tokio::net::TcpStream::connect(&service.addr).await.unwrap();
    // h2 answers the server's PINGs by itself: the connection only ever sends control frames.
    let (_client, connection) = h2::client::handshake(tcp).await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(
        ended.is_ok(),
        "a connection answering pings was kept for 10 s"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: [u8; 4], addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_holds_at_most_its_share_of_the_connections() {
    let service = ServiceProcess::start_with(&[("APP__SERVER__MAX_CONNECTIONS", "8")]).await;
    let share = 8 / imaging_net::ADDRESS_SHARE_DIVISOR;
    let mut held = Vec::new();
    for _ in 0..share {
        let tcp = connect_from([127, 0, 0, 2], &service.addr).await;
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        held.push(client);
    }
    // The next connection from that address is closed at once.
    let mut extra = connect_from([127, 0, 0, 2], &service.addr).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut extra, &mut buf),
    )
    .await
    .expect("closed, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Another address is served.
    let channel = service.channel().await;
    service.register_workspace(&channel, "acme").await;
    let mut ingest = v1::image_ingest_client::ImageIngestClient::new(channel);
    ingest
        .get_usage(authed(
            &service.token("registry", "*", &["service"]),
            v1::GetUsageRequest {
                workspace_id: "acme".into(),
            },
        ))
        .await
        .expect("served while one address holds its share");
    drop(held);
}

// ---- 9. Operations with no downtime -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_and_sweep_run_in_the_running_service_on_the_embedded_default() {
    let service = ServiceProcess::start().await;
    let channel = service.channel().await;
    service.register_workspace(&channel, "acme").await;
    let mut registry = v1::target_registry_client::TargetRegistryClient::new(channel.clone());
    let operator = service.token("ops", "*", &["service"]);
    let done = registry
        .reconcile(authed(&operator, v1::ReconcileRequest { dry_run: false }))
        .await
        .expect("reconcile runs while the service holds the state file")
        .into_inner();
    assert!(done.drifts.is_empty(), "{:?}", done.drifts);
    registry
        .sweep(authed(
            &operator,
            v1::SweepRequest {
                older_than_seconds: 0,
            },
        ))
        .await
        .expect("the janitor runs too");
    // Only a token for every workspace.
    let tenant = service.token("ops", "acme", &["service"]);
    let status = registry
        .reconcile(authed(&tenant, v1::ReconcileRequest { dry_run: true }))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "PERMISSION_DENIED");
    // The offline command says what to do instead.
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_ingest-service"))
        .arg("reconcile")
        .env("APP__STATE__PATH", service.data.path().join("state.redb"))
        .env("APP__STORAGE__ROOT", service.data.path().join("objects"))
        .env("APP__AUTH__HS256_SECRET", crate::process::SECRET)
        .env(
            "APP__STORAGE__URL_SIGNING_KEY",
            crate::process::URL_SIGNING_KEY,
        )
        .output()
        .unwrap();
    assert!(!offline.status.success());
    let said = String::from_utf8_lossy(&offline.stderr);
    assert!(said.contains("imaging-cli reconcile"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_header_arrives_after_shutdown_began_is_shutting_down() {
    let mut app = spawn_app_with(Stack::Embedded, |settings| {
        settings.server.drain_seconds = 5;
    })
    .await;
    let token = app.token("alice", "w1", &[], &[]);
    // The stream is open before the service is told to stop; its header comes after.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut client = app.ingest.clone();
    let request = authed(
        &token,
        tokio_stream::wrappers::ReceiverStream::new(receiver),
    );
    let call = tokio::spawn(async move { client.upload_image(request).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let photo = jpeg(32, 24);
    for message in messages(
        imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/jpeg", &photo),
        &photo,
        1024,
    ) {
        let _ = sender.send(message).await;
    }
    drop(sender);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(reason(&status), "SHUTTING_DOWN");
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_uploads_holding_every_slot_are_shed_by_their_rate_and_others_get_in() {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.admission.max_in_flight = 4;
        settings.limits.admission.max_per_user = 1;
        settings.limits.admission.max_per_workspace = 2;
        settings.limits.upload.rate_grace_seconds = 2;
        settings.limits.upload.min_bytes_per_second = 8192;
    })
    .await;
    app.register_workspace("w3", 0).await;
    // Four users in two workspaces take every slot, each sending a byte every 200 ms.
    let mut trickles = Vec::new();
    for (user, ws) in [("a", "w1"), ("b", "w1"), ("c", "w2"), ("d", "w2")] {
        let token = app.token(user, ws, &[], &[]);
        let (sender, call) = open_upload(&app, &token, "").await;
        let feeding = tokio::spawn(async move {
            for _ in 0..100 {
                if sender.send(chunk(&[0xFF])).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        trickles.push((call, feeding));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = app.token("v", "w3", &[], &[]);
    let photo = jpeg(64, 48);
    let shed = app
        .upload(
            &victim,
            target(TargetKind::Receipt, ""),
            "image/jpeg",
            &photo,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&shed), "OVERLOADED", "every slot is held");
    // Past the grace period the trickles fall below the rate and give their slots back.
    for (call, feeding) in trickles {
        let status = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("refused by its rate")
            .unwrap()
            .unwrap_err();
        assert_eq!(reason(&status), "UPLOAD_TIMEOUT");
        feeding.abort();
    }
    app.upload(
        &victim,
        target(TargetKind::Receipt, ""),
        "image/jpeg",
        &photo,
    )
    .await
    .expect("the fifth workspace's upload gets a slot");
}
