//! Lifecycle: load shedding instead of queueing, and draining on SIGTERM.

use crate::helpers::{Stack, TestApp, authed, header, reason, spawn_app_with, target};
use crate::process::ServiceProcess;
use imaging_e2e::fixtures::jpeg;
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Starts an upload and sends its header and first half; returns the sender for the rest.
pub(crate) async fn half_sent_upload(
    client: &mut v1::image_ingest_client::ImageIngestClient<tonic::transport::Channel>,
    token: &str,
    bytes: &[u8],
) -> (
    mpsc::Sender<v1::UploadImageRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<v1::UploadImageResponse>, tonic::Status>>,
) {
    let (sender, receiver) = mpsc::channel(4);
    let mut client = client.clone();
    let request = authed(token, tokio_stream::wrappers::ReceiverStream::new(receiver));
    let call = tokio::spawn(async move { client.upload_image(request).await });
    let h = header(target(TargetKind::Receipt, ""), "image/jpeg", bytes);
    sender
        .send(v1::UploadImageRequest {
            part: Some(Part::Header(h)),
        })
        .await
        .unwrap();
    let half = bytes[..bytes.len() / 2].to_vec();
    sender
        .send(v1::UploadImageRequest {
            part: Some(Part::Chunk(half.into())),
        })
        .await
        .unwrap();
    (sender, call)
}

#[tokio::test]
async fn uploads_over_the_in_flight_limit_are_shed_at_once_not_queued() {
    let app = spawn_app_with(Stack::Embedded, |s| s.limits.admission.max_in_flight = 1).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(300, 200);
    let mut client = app.ingest.clone();
    let (sender, first) = half_sent_upload(&mut client, &token, &bytes).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let shed = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/jpeg",
            &bytes,
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&shed), "OVERLOADED");
    assert_eq!(shed.code(), tonic::Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );

    let rest = bytes[bytes.len() / 2..].to_vec();
    sender
        .send(v1::UploadImageRequest {
            part: Some(Part::Chunk(rest.into())),
        })
        .await
        .unwrap();
    drop(sender);
    first.await.unwrap().expect("the admitted upload finishes");
    app.upload(
        &token,
        target(TargetKind::Receipt, ""),
        "image/jpeg",
        &bytes,
    )
    .await
    .expect("capacity is back");
}

#[tokio::test]
async fn sigterm_lets_an_upload_in_flight_finish_and_the_process_exits_within_the_deadline() {
    let mut service = ServiceProcess::start_with(&[("APP__SERVER__DRAIN_SECONDS", "5")]).await;
    let channel = service.channel().await;
    service.register_workspace(&channel, "w1").await;
    let mut client = v1::image_ingest_client::ImageIngestClient::new(channel);
    let token = service.token("u1", "w1", &[]);
    let bytes = jpeg(300, 200);
    let (sender, call) = half_sent_upload(&mut client, &token, &bytes).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut child = service.take_child();
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest = bytes[bytes.len() / 2..].to_vec();
    sender
        .send(v1::UploadImageRequest {
            part: Some(Part::Chunk(rest.into())),
        })
        .await
        .unwrap();
    drop(sender);
    let stored = call
        .await
        .unwrap()
        .expect("the upload in flight finishes after SIGTERM")
        .into_inner();

    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "exited within the drain deadline"
    );
    let on_disk = std::fs::read(service.data.path().join("objects").join(&stored.path)).unwrap();
    assert_eq!(on_disk, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_burst_on_the_embedded_default_keeps_every_acknowledged_upload_readable_and_counted()
 {
    use ingest_service::state::{Catalog, EmbeddedState, Quota};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut service = ServiceProcess::start_with(&[
        ("APP__LIMITS__ADMISSION__MAX_PER_USER", "32"),
        ("APP__LIMITS__ADMISSION__MAX_PER_WORKSPACE", "32"),
    ])
    .await;
    let channel = service.channel().await;
    service.register_workspace(&channel, "w1").await;
    let token = service.token("u1", "w1", &[]);
    let acked = Arc::new(AtomicUsize::new(0));
    let mut burst = Vec::new();
    for n in 0..24u32 {
        let (channel, token, acked) = (channel.clone(), token.clone(), acked.clone());
        burst.push(tokio::spawn(async move {
            let bytes = jpeg(300 + n, 200);
            let h = header(target(TargetKind::Receipt, ""), "image/jpeg", &bytes);
            let done = v1::image_ingest_client::ImageIngestClient::new(channel)
                .upload_image(authed(
                    &token,
                    tokio_stream::iter(crate::helpers::messages(h, &bytes, 16 * 1024)),
                ))
                .await;
            if done.is_ok() {
                acked.fetch_add(1, Ordering::SeqCst);
            }
            done.map(|response| (response.into_inner(), bytes))
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "no upload was acknowledged");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    service.kill();
    let mut acknowledged = Vec::new();
    for upload in burst {
        if let Ok(done) = upload.await.unwrap() {
            acknowledged.push(done);
        }
    }
    assert!(
        acknowledged.len() >= 4 && acknowledged.len() < 24,
        "{}",
        acknowledged.len()
    );

    // After a restart, every acknowledged upload is there, byte for byte.
    service.restart().await;
    let channel = service.channel().await;
    let mut client = v1::image_ingest_client::ImageIngestClient::new(channel);
    for (done, bytes) in &acknowledged {
        let info = client
            .get_image(authed(
                &token,
                v1::GetImageRequest {
                    target: Some(target(TargetKind::Receipt, &done.image_id)),
                    owner: String::new(),
                },
            ))
            .await
            .expect("an acknowledged upload survives SIGKILL")
            .into_inner();
        assert_eq!(info.size_bytes, bytes.len() as u64);
        let on_disk = std::fs::read(service.data.path().join("objects").join(&info.path)).unwrap();
        assert_eq!(&on_disk, bytes);
    }

    // And the usage is exactly what the records hold, acknowledged or committed just before the
    // kill; every record's object is on disk.
    service.kill();
    let state = EmbeddedState::open(service.data.path().join("state.redb")).unwrap();
    let records = state.images().await.unwrap();
    assert!(records.len() >= acknowledged.len());
    let mut total = 0;
    for record in &records {
        let path = service.data.path().join("objects").join(&record.key);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), record.size);
        total += record.size;
    }
    assert_eq!(state.used("w1").await.unwrap(), total);
}

/// A JPEG photo of about 1 MB.
fn megabyte_photo() -> Vec<u8> {
    imaging_e2e::fixtures::scenes::photo_jpeg(1600, 1200, 11, 92)
}

/// `clients` uploads of `bytes` at once (users `u{round}-{i}`, spread over `workspaces`): how
/// many were stored and how many refused as `OVERLOADED`; any other outcome fails the test.
async fn stored_or_overloaded(
    app: &TestApp,
    round: usize,
    clients: usize,
    workspaces: &[&str],
    bytes: &[u8],
) -> (usize, usize) {
    let calls = (0..clients).map(|i| {
        let token = app.token(
            &format!("u{round}-{i}"),
            workspaces[i % workspaces.len()],
            &[],
            &[],
        );
        async move {
            app.upload(&token, target(TargetKind::Receipt, ""), "image/jpeg", bytes)
                .await
        }
    });
    let (mut stored, mut overloaded) = (0, 0);
    for outcome in futures::future::join_all(calls).await {
        match outcome {
            Ok(_) => stored += 1,
            Err(status)
                if status.code() == tonic::Code::Unavailable && reason(&status) == "OVERLOADED" =>
            {
                overloaded += 1;
            }
            Err(status) => panic!(
                "round {round}: {:?} {} ({})",
                status.code(),
                status.message(),
                reason(&status)
            ),
        }
    }
    (stored, overloaded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_uploads_than_slots_each_end_stored_or_overloaded_never_otherwise() {
    let app = spawn_app_with(Stack::Embedded, |s| s.limits.admission.max_in_flight = 4).await;
    let bytes = megabyte_photo();
    assert!(bytes.len() > 512 * 1024, "{} bytes", bytes.len());
    let (mut stored, mut overloaded) = (0, 0);
    for round in 0..3 {
        let (s, o) = stored_or_overloaded(&app, round, 32, &["w1", "w2"], &bytes).await;
        (stored, overloaded) = (stored + s, overloaded + o);
    }
    assert!(stored >= 4, "{stored} stored");
    assert!(overloaded >= 1, "{overloaded} refused");
    assert_eq!(stored + overloaded, 96);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_twenty_eight_clients_against_the_default_limit_are_stored_or_overloaded() {
    let app = spawn_app_with(Stack::Embedded, |s| {
        assert_eq!(s.limits.admission.max_in_flight, 64, "the default limit");
    })
    .await;
    // Eight workspaces, 16 clients each: under the per-workspace limit (32), so the global one
    // is what refuses.
    let workspaces = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"];
    for workspace in &workspaces[2..] {
        app.register_workspace(workspace, 0).await;
    }
    let bytes = imaging_e2e::fixtures::scenes::photo_jpeg(800, 600, 5, 90);
    let (stored, overloaded) = stored_or_overloaded(&app, 0, 128, &workspaces, &bytes).await;
    println!("{stored} stored, {overloaded} refused");
    assert_eq!(stored + overloaded, 128);
    assert!(stored >= 64, "{stored} stored, {overloaded} refused");
}

/// One gRPC length-prefixed frame of `message`.
fn grpc_frame(message: &v1::UploadImageRequest) -> bytes::Bytes {
    use prost::Message;
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    frame.into()
}

/// Watched at the HTTP/2 level: the refusal of an upload whose client is still sending waits
/// for the client's last frame, and the stream is never reset under it (a reset while sending
/// is what gRPC core clients report as INTERNAL instead of the status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_answered_after_the_client_has_sent_everything_without_a_reset() {
    let app = spawn_app_with(Stack::Embedded, |s| s.limits.admission.max_in_flight = 1).await;
    let token = app.token("u1", "w1", &[], &[]);
    let bytes = jpeg(300, 200);
    let mut client = app.ingest.clone();
    let (holder, first) = half_sent_upload(&mut client, &token, &bytes).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let authority = app.addr.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = http::Request::post(format!(
        "http://{authority}/imaging.v1.ImageIngest/UploadImage"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", format!("Bearer {token}"))
    .body(())
    .unwrap();
    let (response, mut send) = h2.send_request(request, false).unwrap();
    let h = header(target(TargetKind::Receipt, ""), "image/jpeg", &bytes);
    send.send_data(
        grpc_frame(&v1::UploadImageRequest {
            part: Some(Part::Header(h)),
        }),
        false,
    )
    .unwrap();
    send.send_data(
        grpc_frame(&v1::UploadImageRequest {
            part: Some(Part::Chunk(bytes[..1000].to_vec().into())),
        }),
        false,
    )
    .unwrap();

    // Refused at once (the only slot is held), but not answered while the client still sends.
    let mut response = std::pin::pin!(response);
    let early = tokio::time::timeout(Duration::from_millis(500), &mut response).await;
    assert!(
        early.is_err(),
        "answered while the client was still sending"
    );
    let reset = tokio::time::timeout(
        Duration::from_millis(100),
        std::future::poll_fn(|cx| send.poll_reset(cx)),
    )
    .await;
    assert!(reset.is_err(), "the stream was reset: {reset:?}");

    // The rest of the file and the end of the stream: now the status comes, with its reason.
    send.send_data(
        grpc_frame(&v1::UploadImageRequest {
            part: Some(Part::Chunk(bytes[1000..].to_vec().into())),
        }),
        true,
    )
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered once the client has finished")
        .unwrap();
    let status = tonic::Status::from_header_map(answer.headers()).expect("a trailers-only status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "OVERLOADED");

    drop(holder);
    let _ = first.await;
}
