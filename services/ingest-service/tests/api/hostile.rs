//! Hostile clients: no work before the token is checked, silent and half-sent connections cut
//! off, one user's silent uploads cannot starve another user.

use crate::helpers::{Stack, authed, reason, spawn_app_with, target};
use crate::process::{ServiceProcess, URL_SIGNING_KEY};
use bytes::Bytes;
use imaging_e2e::fixtures::jpeg;
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_streams_of_large_unary_messages_are_refused_unread() {
    let service = ServiceProcess::start().await;
    let tcp = tokio::net::TcpStream::connect(&service.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    // Warm up: one refused call, so the baseline includes the connection's own buffers.
    let before = {
        let mut client = client.clone().ready().await.unwrap();
        let request = http::Request::post(format!(
            "http://{}/imaging.v1.ImageIngest/GetUsage",
            service.addr
        ))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
        let (response, _send) = client.send_request(request, true).unwrap();
        response.await.unwrap();
        service.peak_rss_kib()
    };

    // One gRPC frame of a 4 MB message.
    let length = 4 * 1024 * 1024 - 5;
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(length as u32).to_be_bytes());
    frame.resize(length + 5, 0x42);
    let message = Bytes::from(frame);
    let mut calls = Vec::new();
    for _ in 0..250 {
        let mut client = client.clone().ready().await.unwrap();
        let request = http::Request::post(format!(
            "http://{}/imaging.v1.ImageIngest/GetUsage",
            service.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        let _ = send.send_data(message.clone(), true);
        calls.push(tokio::spawn(async move {
            let response = tokio::time::timeout(Duration::from_secs(10), response)
                .await
                .expect("answered")
                .unwrap();
            let status = response
                .headers()
                .get("grpc-status")
                .map(|value| value.to_str().unwrap().to_owned());
            drop(send);
            status
        }));
    }
    for call in calls {
        assert_eq!(
            call.await.unwrap().as_deref(),
            Some("16"),
            "UNAUTHENTICATED, answered from the headers"
        );
    }
    let grown_mib = (service.peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < 48,
        "250 unauthenticated 4 MB messages grew the service by {grown_mib} MiB"
    );
}

/// Connects to `addr`, sends `half` of a request and goes silent; how long the server took to
/// close the connection.
async fn closed_after(addr: &str, half: &[u8]) -> Duration {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(half).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("{addr} kept a half-sent connection open for 10 s"),
        }
    }
}

#[tokio::test]
async fn half_sent_connections_are_closed_by_the_grpc_listener_and_the_file_server() {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.server.idle_timeout_seconds = 1;
        settings.server.header_read_timeout_seconds = 1;
    })
    .await;
    let grpc = app.addr.trim_start_matches("http://").to_owned();
    let took = closed_after(&grpc, b"PRI * HTTP/2.0\r\n").await;
    assert!(took < Duration::from_secs(4), "gRPC: {took:?}");
    let files = app
        .files_addr
        .clone()
        .expect("the embedded default serves files");
    let took = closed_after(&files, b"GET /files/ws/w1/x HTT").await;
    assert!(took < Duration::from_secs(4), "file server: {took:?}");
}

/// Opens an upload stream as `token`, sends its header and nothing else.
async fn silent_upload(
    app: &crate::helpers::TestApp,
    token: &str,
) -> (
    tokio::sync::mpsc::Sender<v1::UploadImageRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<v1::UploadImageResponse>, tonic::Status>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    let mut client = app.ingest.clone();
    let request = authed(token, tokio_stream::wrappers::ReceiverStream::new(receiver));
    let call = tokio::spawn(async move { client.upload_image(request).await });
    let header = v1::UploadHeader {
        target: Some(target(TargetKind::Receipt, "")),
        content_type: "image/jpeg".into(),
        ..Default::default()
    };
    sender
        .send(v1::UploadImageRequest {
            part: Some(Part::Header(header)),
        })
        .await
        .unwrap();
    (sender, call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_silent_uploads_of_one_user_do_not_stop_another_users_upload() {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.upload.idle_seconds = 2;
    })
    .await;
    let attacker = app.token("mallory", "w1", &[], &[]);
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(silent_upload(&app, &attacker).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let victim = app.token("alice", "w1", &[], &[]);
    let bytes = jpeg(64, 48);
    app.upload(
        &victim,
        target(TargetKind::Receipt, ""),
        "image/jpeg",
        &bytes,
    )
    .await
    .expect("another user's upload goes through");

    let mut refused = 0;
    let mut timed_out = 0;
    for (sender, call) in silent {
        let status = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("every silent upload ends by itself")
            .unwrap()
            .unwrap_err();
        match reason(&status).as_str() {
            "TOO_MANY_UPLOADS" => refused += 1,
            "UPLOAD_TIMEOUT" => {
                assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
                timed_out += 1;
            }
            other => panic!("unexpected {other}"),
        }
        drop(sender);
    }
    let cap = app.settings.limits.admission.max_per_user;
    assert_eq!(
        timed_out, cap,
        "the user's own slots, freed by the idle timeout"
    );
    assert_eq!(refused, 64 - cap);
    assert_eq!(app.objects().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_server_streams_a_large_object_to_several_readers_without_holding_it() {
    let service = ServiceProcess::start().await;
    let key = "ws/w1/reports/R1/big.pdf";
    let path = service.data.path().join("objects").join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let size = 96 * 1024 * 1024;
    let mut content = b"%PDF-1.7\n".to_vec();
    content.resize(size, b'0');
    std::fs::write(&path, &content).unwrap();
    drop(content);
    let expires = ingest_service::auth::expires_in(600);
    let signature = ingest_service::storage::signed_url::UrlSigner::new(URL_SIGNING_KEY.as_bytes())
        .sign(key, expires);
    let url = format!(
        "http://{}/files/{key}?expires={expires}&signature={signature}",
        service.files_addr
    );
    let before = service.peak_rss_kib();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        readers.push(tokio::spawn(async move {
            let mut response = reqwest::get(&url).await.unwrap();
            assert_eq!(response.status(), 200);
            let headers = response.headers().clone();
            let mut read = 0usize;
            while let Some(chunk) = response.chunk().await.unwrap() {
                read += chunk.len();
            }
            (headers, read)
        }));
    }
    for reader in readers {
        let (headers, read) = reader.await.unwrap();
        assert_eq!(read, size);
        assert_eq!(headers["content-length"], size.to_string().as_str());
        assert_eq!(headers["content-type"], "application/pdf");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment"),
            "{:?}",
            headers["content-disposition"]
        );
    }
    let grown_mib = (service.peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < 32,
        "4 readers of a 96 MiB object grew the service by {grown_mib} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_are_refused_by_the_service_without_spending_the_memory_they_ask_for() {
    use imaging_e2e::fixtures::{
        pdf_huge_array, pdf_inflation_bomb, pdf_tiny_objects_bomb, png_with_profile,
        sixteen_bit_rgba_png,
    };
    use tonic_types::StatusExt;
    let service = ServiceProcess::start().await;
    let channel = service.channel().await;
    service.register_workspace(&channel, "w1").await;
    let registry_token = service.token("registry", "*", &["service"]);
    let mut registry = v1::target_registry_client::TargetRegistryClient::new(channel.clone());
    registry
        .register_target(authed(
            &registry_token,
            v1::RegisterTargetRequest {
                target: Some(crate::helpers::expense("w1", "x1")),
                workspace_id: "w1".into(),
                owner: "u1".into(),
            },
        ))
        .await
        .unwrap();
    let token = service.token("u1", "w1", &["owner"]);
    let mut client = v1::image_ingest_client::ImageIngestClient::new(channel)
        .max_encoding_message_size(16 << 20);
    let before = service.peak_rss_kib();
    let bombs = [
        (
            "object streams inflating to 8 GB",
            pdf_inflation_bomb(),
            "application/pdf",
            target(TargetKind::Receipt, ""),
        ),
        (
            "millions of tiny objects",
            pdf_tiny_objects_bomb(),
            "application/pdf",
            target(TargetKind::Receipt, ""),
        ),
        (
            "one huge array",
            pdf_huge_array(),
            "application/pdf",
            target(TargetKind::Receipt, ""),
        ),
        (
            "a 128 MiB ICC profile",
            png_with_profile(128 << 20),
            "image/png",
            target(TargetKind::Receipt, ""),
        ),
        (
            "7071x7071 16-bit RGBA to WebP",
            sixteen_bit_rgba_png(7071),
            "image/png",
            crate::helpers::expense("w1", "x1"),
        ),
    ];
    for (name, bytes, content_type, to) in bombs {
        let header = crate::helpers::header(to, content_type, &bytes);
        let messages = crate::helpers::messages(header, &bytes, 1024 * 1024);
        let refused = client
            .upload_image(authed(&token, tokio_stream::iter(messages)))
            .await
            .expect_err(name);
        assert_eq!(reason(&refused), "CORRUPT_IMAGE", "{name}: {refused:?}");
        let info = refused.get_error_details().error_info().cloned().unwrap();
        assert_eq!(
            info.metadata.get("cause").map(String::as_str),
            Some("TOO_COMPLEX"),
            "{name}"
        );
    }
    let grown_mib = (service.peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < 96,
        "refusing the bombs grew the service by {grown_mib} MiB"
    );
}
