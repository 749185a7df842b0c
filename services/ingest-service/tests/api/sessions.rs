//! Resumable upload sessions over gRPC (`StartUpload`, `UploadImage` with `upload_id` and
//! `write_offset`, `QueryUpload`, `CancelUpload`), on the embedded default and on S3 + Redis:
//! a stream broken mid-way (HTTP/2 `RST_STREAM`, sent by a client speaking frames itself) keeps
//! what arrived, the upload resumes from the committed size (or below it, the committed bytes
//! skipped) and completes as a one-shot upload would; offsets, quota, caps, expiry and
//! cancellation as a user would check them.

use crate::helpers::{Stack, TestApp, authed, header, reason, spawn_app, spawn_app_with, target};
use crate::process::ServiceProcess;
use crate::resets::frame;
use imaging_e2e::fixtures::{jpeg, noise_png, png};
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use sha2::Digest;
use std::time::Duration;
use tonic_types::StatusExt;

/// Writes `bytes` to the session at `offset` over a fresh HTTP/2 connection, then resets the
/// stream (`RST_STREAM` CANCEL) instead of ending it: a connection lost mid-upload.
async fn broken_write(addr: &str, token: &str, id: &str, offset: u64, bytes: &[u8]) {
    let addr = addr.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/imaging.v1.ImageIngest/UploadImage"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let (_response, mut send) = client.send_request(request, false).unwrap();
    let head = v1::UploadHeader {
        upload_id: id.into(),
        write_offset: offset,
        ..Default::default()
    };
    send.send_data(
        frame(&v1::UploadImageRequest {
            part: Some(Part::Header(head)),
        }),
        false,
    )
    .unwrap();
    for chunk in bytes.chunks(64 * 1024) {
        send.reserve_capacity(chunk.len() + 16);
        send.send_data(
            frame(&v1::UploadImageRequest {
                part: Some(Part::Chunk(chunk.to_vec().into())),
            }),
            false,
        )
        .unwrap();
    }
    // Let the bytes reach the service, then cut the stream off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send.send_reset(h2::Reason::CANCEL);
}

/// The session's committed size once a write in progress has ended (it holds the session's
/// lock until then, and a query never waits for it: polled until it stops growing).
async fn settled(app_addr: &str, token: &str, id: &str) -> v1::UploadStatus {
    let channel = tonic::transport::Channel::from_shared(app_addr.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = v1::image_ingest_client::ImageIngestClient::new(channel);
    let mut last = None;
    for _ in 0..100 {
        let status = client
            .query_upload(authed(
                token,
                v1::QueryUploadRequest {
                    upload_id: id.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if last.as_ref() == Some(&status) && status.committed_size > 0 {
            return status;
        }
        last = Some(status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last.unwrap()
}

fn receipt_header(bytes: &[u8], content_type: &str) -> v1::UploadHeader {
    header(target(TargetKind::Receipt, ""), content_type, bytes)
}

/// What a user checks of a finished upload: the answer, the stored bytes, the quota.
async fn assert_stored(app: &TestApp, token: &str, done: &v1::UploadImageResponse, bytes: &[u8]) {
    assert!(done.complete, "{done:?}");
    assert_eq!(done.size_bytes, bytes.len() as u64);
    assert_eq!(done.sha256, sha2::Sha256::digest(bytes).to_vec());
    assert_eq!(app.object(&done.path).await, bytes, "stored bytes");
    let info = app
        .get_image(token, target(TargetKind::Receipt, &done.image_id))
        .await
        .unwrap();
    let (status, fetched) = app.fetch(&info.url).await;
    assert_eq!((status, fetched.as_slice()), (200, bytes));
    assert_eq!(
        app.used("w1").await,
        bytes.len() as u64,
        "quota charged once"
    );
}

async fn resumed_after_a_broken_stream(stack: Stack, resend_from_zero: bool) {
    let app = spawn_app(stack).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = noise_png(900);
    assert!(bytes.len() > 2 << 20, "{} bytes", bytes.len());
    let started = app
        .start_upload(&token, receipt_header(&bytes, "image/png"))
        .await
        .unwrap();
    assert_eq!(started.committed_size, 0);
    assert_eq!(started.length, bytes.len() as u64);
    let cut = bytes.len() * 3 / 5;
    broken_write(&app.addr, &token, &started.upload_id, 0, &bytes[..cut]).await;
    let status = settled(&app.addr, &token, &started.upload_id).await;
    let committed = status.committed_size as usize;
    assert!(
        committed > 0 && committed <= cut,
        "{committed} of {cut} bytes committed"
    );
    assert!(!status.complete);
    // Nothing is an image yet, and the quota holds the declared length as a reservation only.
    assert_eq!(app.used("w1").await, 0);
    let from = if resend_from_zero { 0 } else { committed };
    let done = app
        .write_upload(
            &token,
            &started.upload_id,
            from as u64,
            &bytes[from..],
            false,
        )
        .await
        .unwrap();
    assert_stored(&app, &token, &done, &bytes).await;
    // A completion retried after its answer was lost gets the same result, and stores nothing
    // more.
    let again = app
        .write_upload(&token, &started.upload_id, 0, &bytes, false)
        .await
        .unwrap();
    assert_eq!(again, done);
    let status = app.query_upload(&token, &started.upload_id).await.unwrap();
    assert!(status.complete);
    assert_eq!(status.result.as_ref(), Some(&done));
    assert_eq!(app.used("w1").await, bytes.len() as u64);
    // Nothing staged is left.
    let staged: Vec<_> = app
        .objects()
        .await
        .into_iter()
        .filter(|object| object.key.starts_with("sessions/"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}

#[tokio::test]
async fn a_broken_stream_resumes_from_the_committed_size_on_the_embedded_default() {
    resumed_after_a_broken_stream(Stack::Embedded, false).await;
}

#[tokio::test]
async fn a_broken_stream_resent_from_zero_skips_what_was_committed_on_s3_and_redis() {
    resumed_after_a_broken_stream(Stack::Real, true).await;
}

/// Over S3, writes of a few hundred KiB each add up past the 5 MiB part minimum: the first
/// whole part goes to a multipart upload, the writes after it wait as pieces, and the stored image
/// is byte for byte the upload.
#[tokio::test]
async fn many_small_writes_past_the_part_minimum_make_the_same_bytes_on_s3() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = noise_png(1400);
    assert!(bytes.len() > 5 << 20, "{} bytes", bytes.len());
    let started = app
        .start_upload(&token, receipt_header(&bytes, "image/png"))
        .await
        .unwrap();
    let mut offset = 0;
    let mut last = None;
    for piece in bytes.chunks(700 * 1024) {
        let written = app
            .write_upload(&token, &started.upload_id, offset, piece, false)
            .await
            .unwrap();
        offset += piece.len() as u64;
        if offset < bytes.len() as u64 {
            assert_eq!(written.committed_size, offset);
            assert!(!written.complete);
        }
        last = Some(written);
    }
    assert_stored(&app, &token, &last.unwrap(), &bytes).await;
}

#[tokio::test]
async fn writes_that_do_not_continue_the_upload_are_refused_and_change_nothing() {
    let app = spawn_app(Stack::Embedded).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(64, 64);
    let started = app
        .start_upload(&token, receipt_header(&bytes, "image/jpeg"))
        .await
        .unwrap();
    let id = started.upload_id;
    app.write_upload(&token, &id, 0, &bytes[..100], false)
        .await
        .unwrap();
    // Past the committed size.
    let err = app
        .write_upload(&token, &id, 150, &bytes[150..], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&err), "OFFSET_MISMATCH");
    let info = err.get_error_details().error_info().cloned().unwrap();
    assert_eq!(
        info.metadata.get("committed_size").map(String::as_str),
        Some("100")
    );
    // Below it with `exact_offset` (as tus and HTTP resumable uploads need).
    let mut messages = crate::helpers::messages(
        v1::UploadHeader {
            upload_id: id.clone(),
            write_offset: 50,
            exact_offset: true,
            ..Default::default()
        },
        &bytes[50..],
        64 * 1024,
    );
    messages.truncate(2);
    let err = app.upload_messages(&token, messages).await.unwrap_err();
    assert_eq!(reason(&err), "OFFSET_MISMATCH");
    // Past the declared length: SIZE_MISMATCH, nothing of the write kept.
    let mut longer = bytes[100..].to_vec();
    longer.push(0);
    let err = app
        .write_upload(&token, &id, 100, &longer, false)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "SIZE_MISMATCH");
    // A checksum that does not match keeps nothing either.
    let mut messages = crate::helpers::messages(
        v1::UploadHeader {
            upload_id: id.clone(),
            write_offset: 100,
            write_sha256: vec![0; 32],
            ..Default::default()
        },
        &bytes[100..200],
        64 * 1024,
    );
    messages.truncate(2);
    let err = app.upload_messages(&token, messages).await.unwrap_err();
    assert_eq!(reason(&err), "CHECKSUM_MISMATCH");
    assert_eq!(
        app.query_upload(&token, &id).await.unwrap().committed_size,
        100
    );
    // Another user, or another workspace, does not see the session.
    for stranger in [
        app.token("u2", "w1", &[], &[]),
        app.token("u1", "w2", &[], &[]),
    ] {
        let err = app.query_upload(&stranger, &id).await.unwrap_err();
        assert_eq!(reason(&err), "UPLOAD_NOT_FOUND");
        let err = app
            .write_upload(&stranger, &id, 100, &bytes[100..], false)
            .await
            .unwrap_err();
        assert_eq!(reason(&err), "UPLOAD_NOT_FOUND");
    }
    // The right write still completes it.
    let done = app
        .write_upload(&token, &id, 100, &bytes[100..], false)
        .await
        .unwrap();
    assert_stored(&app, &token, &done, &bytes).await;
}

#[tokio::test]
async fn a_session_holds_its_quota_until_it_is_cancelled() {
    let app = spawn_app(Stack::Real).await;
    let photo = jpeg(40, 40);
    // Room for a session of 8,000 bytes and a byte less than the photo.
    app.register_workspace("small", 8_000 + photo.len() as u64 - 1)
        .await;
    let token = app.token("u1", "small", &[], &[]);
    let big = vec![0u8; 8_000];
    let started = app
        .start_upload(&token, receipt_header(&big, "image/jpeg"))
        .await
        .unwrap();
    // 8,000 bytes reserved: the photo does not fit, nor a second session.
    let err = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/jpeg",
            &photo,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "QUOTA_EXCEEDED");
    let err = app
        .start_upload(&token, receipt_header(&big, "image/jpeg"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "QUOTA_EXCEEDED");
    assert_eq!(
        app.cancel_upload(&token, &started.upload_id).await.unwrap(),
        8_000
    );
    let err = app
        .query_upload(&token, &started.upload_id)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UPLOAD_NOT_FOUND");
    app.upload(
        &token,
        target(TargetKind::Receipt, ""),
        "image/jpeg",
        &photo,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_user_has_a_bounded_number_of_open_sessions() {
    let app = spawn_app_with(Stack::Real, |settings| {
        settings.limits.sessions.max_open_per_user = 2;
    })
    .await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(32, 32);
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            app.start_upload(&token, receipt_header(&bytes, "image/jpeg"))
                .await
                .unwrap()
                .upload_id,
        );
    }
    let err = app
        .start_upload(&token, receipt_header(&bytes, "image/jpeg"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&err), "TOO_MANY_OPEN_UPLOADS");
    // Another user is not held back by this one.
    let other = app.token("u2", "w1", &[], &[]);
    app.start_upload(&other, receipt_header(&bytes, "image/jpeg"))
        .await
        .unwrap();
    // A completed session stops counting.
    app.write_upload(&token, &open[0], 0, &bytes, false)
        .await
        .unwrap();
    app.start_upload(&token, receipt_header(&bytes, "image/jpeg"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_session_is_removed_with_its_bytes_and_its_reservation() {
    for stack in [Stack::Embedded, Stack::Real] {
        let app = spawn_app_with(stack, |settings| {
            settings.limits.sessions.ttl_seconds = 2;
        })
        .await;
        app.register_workspace("small", 10_000).await;
        let token = app.token("u1", "small", &[], &[]);
        let photo = jpeg(40, 40);
        let mut declared = receipt_header(&photo, "image/jpeg");
        declared.declared_size = 9_000;
        let started = app.start_upload(&token, declared).await.unwrap();
        app.write_upload(&token, &started.upload_id, 0, &photo[..1000], false)
            .await
            .unwrap();
        let staged = |objects: Vec<ingest_service::storage::ObjectEntry>| {
            objects
                .into_iter()
                .filter(|object| object.key.starts_with("sessions/"))
                .count()
        };
        assert!(staged(app.objects().await) > 0, "{stack:?}: bytes staged");
        let err = app
            .upload(
                &token,
                target(TargetKind::Receipt, ""),
                "image/jpeg",
                &photo,
            )
            .await
            .unwrap_err();
        assert_eq!(reason(&err), "QUOTA_EXCEEDED", "{stack:?}");
        // The janitor runs every second with a 2-second lifetime.
        let mut gone = false;
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if staged(app.objects().await) == 0 {
                gone = true;
                break;
            }
        }
        assert!(gone, "{stack:?}: staged bytes removed");
        let err = app
            .query_upload(&token, &started.upload_id)
            .await
            .unwrap_err();
        assert_eq!(reason(&err), "UPLOAD_NOT_FOUND", "{stack:?}");
        app.upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/jpeg",
            &photo,
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_completed_upload_that_is_not_an_image_ends_the_session_and_frees_its_quota() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut bytes = png(64, 64);
    let len = bytes.len();
    bytes[len - 30..].fill(0x55);
    let started = app
        .start_upload(&token, receipt_header(&bytes, "image/png"))
        .await
        .unwrap();
    let err = app
        .write_upload(&token, &started.upload_id, 0, &bytes, false)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "CORRUPT_IMAGE");
    let err = app
        .query_upload(&token, &started.upload_id)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "UPLOAD_NOT_FOUND");
    assert!(app.objects().await.is_empty(), "nothing stored or staged");
    assert_eq!(app.used("w1").await, 0);
    // A type the bytes are not is refused as soon as they show it.
    let photo = jpeg(32, 32);
    let started = app
        .start_upload(&token, receipt_header(&photo, "image/png"))
        .await
        .unwrap();
    let err = app
        .write_upload(&token, &started.upload_id, 0, &photo, false)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "CONTENT_TYPE_MISMATCH");
}

#[tokio::test]
async fn an_upload_of_unknown_length_completes_with_its_finishing_write() {
    let app = spawn_app(Stack::Embedded).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(48, 48);
    let mut unknown = receipt_header(&bytes, "image/jpeg");
    unknown.declared_size = 0;
    let started = app.start_upload(&token, unknown).await.unwrap();
    assert_eq!(started.length, 0);
    let half = bytes.len() / 2;
    let first = app
        .write_upload(&token, &started.upload_id, 0, &bytes[..half], false)
        .await
        .unwrap();
    assert!(!first.complete);
    let done = app
        .write_upload(
            &token,
            &started.upload_id,
            half as u64,
            &bytes[half..],
            true,
        )
        .await
        .unwrap();
    assert_stored(&app, &token, &done, &bytes).await;
}

/// A session started on one replica is resumed on the other, and survives a restart of the
/// embedded default.
#[tokio::test]
async fn a_session_resumes_on_another_replica_and_after_a_restart() {
    let redis = imaging_e2e::RedisServer::start();
    let s3 = imaging_e2e::S3Server::start().await;
    let url = redis.url();
    let env = [
        ("APP__STATE__BACKEND", "redis"),
        ("APP__STATE__URL", url.as_str()),
        ("APP__STORAGE__BACKEND", "s3"),
        ("APP__STORAGE__ENDPOINT", s3.endpoint.as_str()),
        ("APP__STORAGE__REGION", "us-east-1"),
        ("APP__STORAGE__BUCKET", imaging_e2e::S3_BUCKET),
        ("APP__STORAGE__ACCESS_KEY", imaging_e2e::S3_ACCESS_KEY),
        ("APP__STORAGE__SECRET_KEY", imaging_e2e::S3_SECRET_KEY),
    ];
    let first = ServiceProcess::start_with(&env).await;
    let second = ServiceProcess::start_with(&env).await;
    let bytes = noise_png(700);
    resume_across(&first, &second, &bytes).await;

    let mut embedded = ServiceProcess::start().await;
    let channel = embedded.channel().await;
    embedded.register_workspace(&channel, "w1").await;
    let token = embedded.token("u1", "w1", &[]);
    let mut client = v1::image_ingest_client::ImageIngestClient::new(channel);
    let started = start(&mut client, &token, &bytes).await;
    let half = bytes.len() / 2;
    write(&mut client, &token, &started, 0, &bytes[..half]).await;
    embedded.restart().await;
    let mut client = v1::image_ingest_client::ImageIngestClient::new(embedded.channel().await);
    let done = write(&mut client, &token, &started, half, &bytes[half..]).await;
    assert!(done.complete);
    assert_eq!(done.sha256, sha2::Sha256::digest(&bytes).to_vec());
}

async fn start(
    client: &mut v1::image_ingest_client::ImageIngestClient<tonic::transport::Channel>,
    token: &str,
    bytes: &[u8],
) -> String {
    client
        .start_upload(authed(
            token,
            v1::StartUploadRequest {
                header: Some(receipt_header(bytes, "image/png")),
                client_metadata: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .upload_id
}

async fn write(
    client: &mut v1::image_ingest_client::ImageIngestClient<tonic::transport::Channel>,
    token: &str,
    id: &str,
    offset: usize,
    bytes: &[u8],
) -> v1::UploadImageResponse {
    let head = v1::UploadHeader {
        upload_id: id.into(),
        write_offset: offset as u64,
        ..Default::default()
    };
    client
        .upload_image(authed(
            token,
            tokio_stream::iter(crate::helpers::messages(head, bytes, 64 * 1024)),
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn resume_across(first: &ServiceProcess, second: &ServiceProcess, bytes: &[u8]) {
    let channel = first.channel().await;
    first.register_workspace(&channel, "w1").await;
    let token = first.token("u1", "w1", &[]);
    let mut one = v1::image_ingest_client::ImageIngestClient::new(channel);
    let mut two = v1::image_ingest_client::ImageIngestClient::new(second.channel().await);
    let id = start(&mut one, &token, bytes).await;
    let cut = bytes.len() / 3;
    broken_write(
        &format!("http://{}", first.addr),
        &token,
        &id,
        0,
        &bytes[..cut],
    )
    .await;
    let status = settled(&format!("http://{}", second.addr), &token, &id).await;
    let committed = status.committed_size as usize;
    assert!(committed > 0 && committed <= cut, "{committed} of {cut}");
    let done = write(&mut two, &token, &id, committed, &bytes[committed..]).await;
    assert!(done.complete);
    assert_eq!(done.size_bytes, bytes.len() as u64);
    assert_eq!(done.sha256, sha2::Sha256::digest(bytes).to_vec());
    // The first replica sees the completed session too.
    let status = one
        .query_upload(authed(
            &token,
            v1::QueryUploadRequest {
                upload_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(status.complete);
    assert_eq!(status.result.unwrap().image_id, done.image_id);
}
