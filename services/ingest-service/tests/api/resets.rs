//! A client that resets its upload stream (HTTP/2 `RST_STREAM`, what a cancelled gRPC call
//! sends) never gets anything stored, even if every byte of a valid file arrived first. The
//! client here speaks HTTP/2 frames itself, over a real connection, as grpcio does.

use crate::helpers::{Stack, TestApp, header, spawn_app};
use bytes::Bytes;
use imaging_e2e::fixtures::jpeg;
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use prost::Message;
use std::time::Duration;

/// One gRPC length-prefixed message.
pub fn frame(message: &v1::UploadImageRequest) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// How a raw upload ends.
enum End {
    /// END_STREAM on the last frame: a complete request.
    HalfClose,
    /// RST_STREAM with CANCEL after every byte was sent.
    Cancel,
}

/// Sends the header (with the size declared or not) and all of `bytes` as one chunk over a fresh
/// HTTP/2 connection, then ends as `end` says; returns the `grpc-status` the server answered, if
/// it answered.
async fn raw_upload(
    app: &TestApp,
    token: &str,
    (content_type, bytes): (&str, &[u8]),
    declared: bool,
    end: End,
) -> Option<String> {
    let addr = app.addr.trim_start_matches("http://").to_owned();
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
    let (response, mut send) = client.send_request(request, false).unwrap();
    let mut h = header(
        crate::helpers::target(TargetKind::Receipt, ""),
        content_type,
        bytes,
    );
    if !declared {
        h.declared_size = 0;
    }
    send.send_data(
        frame(&v1::UploadImageRequest {
            part: Some(Part::Header(h)),
        }),
        false,
    )
    .unwrap();
    let chunk = frame(&v1::UploadImageRequest {
        part: Some(Part::Chunk(bytes.to_vec().into())),
    });
    match end {
        End::HalfClose => {
            send.send_data(chunk, true).unwrap();
            let response = response.await.unwrap();
            let mut body = response.into_body();
            while let Some(data) = body.data().await {
                data.unwrap();
            }
            let trailers = body.trailers().await.unwrap().unwrap_or_default();
            trailers
                .get("grpc-status")
                .map(|value| value.to_str().unwrap().to_owned())
        }
        End::Cancel => {
            send.send_data(chunk, false).unwrap();
            // Let every byte reach the service before the reset.
            tokio::time::sleep(Duration::from_millis(300)).await;
            send.send_reset(h2::Reason::CANCEL);
            tokio::time::sleep(Duration::from_millis(700)).await;
            None
        }
    }
}

#[tokio::test]
async fn a_cancelled_upload_of_a_complete_file_is_never_stored_or_charged() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = spawn_app(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let bytes = jpeg(1000, 800);
        assert!(bytes.len() > 50_000, "a sizeable file: {}", bytes.len());
        // Declared large enough, an upload is forwarded to storage as it arrives.
        let large = imaging_e2e::fixtures::noise_png(400);

        raw_upload(&app, &token, ("image/jpeg", &bytes), false, End::Cancel).await;
        raw_upload(&app, &token, ("image/png", &large), true, End::Cancel).await;
        assert!(app.objects().await.is_empty(), "nothing stored");
        assert_eq!(app.used("w1").await, 0, "nothing charged");

        let status = raw_upload(&app, &token, ("image/jpeg", &bytes), false, End::HalfClose).await;
        assert_eq!(
            status.as_deref(),
            Some("0"),
            "a half-closed upload succeeds"
        );
        let objects = app.objects().await;
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].size, bytes.len() as u64);
        assert_eq!(app.used("w1").await, bytes.len() as u64);
    }
}
