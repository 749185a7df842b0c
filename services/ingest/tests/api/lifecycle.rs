//! Lifecycle: load shedding instead of queueing, and draining on SIGTERM.

use crate::helpers::{Stack, authed, header, reason, spawn_app_with, target};
use crate::process::ServiceProcess;
use imaging_e2e::fixtures::jpeg;
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Starts an upload and sends its header and first half; returns the sender for the rest.
async fn half_sent_upload(
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
    let app = spawn_app_with(Stack::Embedded, |s| s.limits.max_in_flight_uploads = 1).await;
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
