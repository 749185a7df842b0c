//! What an upload looks like on the wire, seen by a recording stand-in for the ingest service
//! (in-process tonic server on a free port). It checks only the gateway's own streaming
//! contract — header first, bounded chunks, token forwarding, and a *reset* (never a clean
//! end) when an upload is cut short. The stand-in is needed for that last point: whether the
//! gateway ended a stream cleanly or reset it is invisible from outside a real service (which
//! refuses a truncated file either way), so only a server that records the stream's ending can
//! show it. Behaviour of the real service is tested end to end in `tests/`.

use crate::configuration::Settings;
use crate::startup::app;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use imaging_proto::v1::image_ingest_server::{ImageIngest, ImageIngestServer};
use imaging_proto::v1::upload_image_request::Part;
use imaging_proto::v1::{
    DeleteImageRequest, DeleteImageResponse, GetImageRequest, GetUsageRequest, ImageInfo,
    UploadHeader, UploadImageRequest, UploadImageResponse, Usage,
};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};
use tower::ServiceExt;

/// What the recorder saw of one UploadImage stream.
#[derive(Debug)]
struct Seen {
    authorization: Option<String>,
    header: Option<UploadHeader>,
    chunk_sizes: Vec<usize>,
    bytes: Vec<u8>,
    /// `true` for a clean end of stream, `false` if the stream failed.
    ended_cleanly: bool,
}

struct Recorder {
    seen: mpsc::UnboundedSender<Seen>,
}

#[tonic::async_trait]
impl ImageIngest for Recorder {
    async fn upload_image(
        &self,
        request: GrpcRequest<Streaming<UploadImageRequest>>,
    ) -> Result<GrpcResponse<UploadImageResponse>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut stream = request.into_inner();
        let mut seen = Seen {
            authorization,
            header: None,
            chunk_sizes: Vec::new(),
            bytes: Vec::new(),
            ended_cleanly: false,
        };
        let outcome = loop {
            match stream.message().await {
                Ok(Some(UploadImageRequest {
                    part: Some(Part::Header(header)),
                })) => seen.header = Some(header),
                Ok(Some(UploadImageRequest {
                    part: Some(Part::Chunk(chunk)),
                })) => {
                    seen.chunk_sizes.push(chunk.len());
                    seen.bytes.extend_from_slice(&chunk);
                }
                Ok(Some(_)) => break Err(Status::invalid_argument("empty message")),
                Ok(None) => {
                    seen.ended_cleanly = true;
                    break Ok(GrpcResponse::new(UploadImageResponse {
                        image_id: "generated$Id".to_owned(),
                        ..Default::default()
                    }));
                }
                Err(status) => break Err(status),
            }
        };
        let _ = self.seen.send(seen);
        outcome
    }

    async fn get_processing_status(
        &self,
        _: GrpcRequest<imaging_proto::v1::GetProcessingStatusRequest>,
    ) -> Result<GrpcResponse<imaging_proto::v1::ProcessingStatusInfo>, Status> {
        Err(Status::unimplemented("not recorded"))
    }

    async fn get_image(
        &self,
        _: GrpcRequest<GetImageRequest>,
    ) -> Result<GrpcResponse<ImageInfo>, Status> {
        Err(Status::unimplemented("not recorded"))
    }

    async fn delete_image(
        &self,
        _: GrpcRequest<DeleteImageRequest>,
    ) -> Result<GrpcResponse<DeleteImageResponse>, Status> {
        Err(Status::unimplemented("not recorded"))
    }

    async fn get_usage(
        &self,
        _: GrpcRequest<GetUsageRequest>,
    ) -> Result<GrpcResponse<Usage>, Status> {
        Err(Status::unimplemented("not recorded"))
    }

    async fn list_images(
        &self,
        _: GrpcRequest<imaging_proto::v1::ListImagesRequest>,
    ) -> Result<GrpcResponse<imaging_proto::v1::ListImagesResponse>, Status> {
        Err(Status::unimplemented("not recorded"))
    }

    async fn start_upload(
        &self,
        _: GrpcRequest<imaging_proto::v1::StartUploadRequest>,
    ) -> Result<GrpcResponse<imaging_proto::v1::UploadStatus>, Status> {
        Err(Status::unimplemented("not recorded"))
    }

    async fn query_upload(
        &self,
        _: GrpcRequest<imaging_proto::v1::QueryUploadRequest>,
    ) -> Result<GrpcResponse<imaging_proto::v1::UploadStatus>, Status> {
        Err(Status::unimplemented("not recorded"))
    }

    async fn cancel_upload(
        &self,
        _: GrpcRequest<imaging_proto::v1::CancelUploadRequest>,
    ) -> Result<GrpcResponse<imaging_proto::v1::CancelUploadResponse>, Status> {
        Err(Status::unimplemented("not recorded"))
    }
}

/// Starts a recorder on a free port; returns its URL and what it records.
async fn start_recorder() -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, recorded) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ImageIngestServer::new(Recorder { seen }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (url, recorded)
}

/// Starts a recorder; returns the gateway router pointed at it and what it records.
async fn gateway_with_recorder() -> (axum::Router, mpsc::UnboundedReceiver<Seen>) {
    let (url, recorded) = start_recorder().await;
    let state = AppState::from_settings(&Settings::for_ingest(url)).unwrap();
    (app(state), recorded)
}

fn frames(sizes: &[usize]) -> Vec<Bytes> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| Bytes::from(vec![i as u8 + 1; size]))
        .collect()
}

fn streamed(frames: Vec<Result<Bytes, std::io::Error>>) -> Body {
    Body::from_stream(futures::stream::iter(frames))
}

#[tokio::test]
async fn a_body_reaches_the_service_as_a_header_then_chunks_of_at_most_chunk_bytes() {
    let (router, mut recorded) = gateway_with_recorder().await;
    let input = frames(&[1, 3 * 1024 * 1024, 10]);
    let request = Request::post("/api/image/v1.1/receipt")
        .header(header::AUTHORIZATION, "OAuth a.b.c")
        .header(header::CONTENT_TYPE, "image/png; charset=binary")
        .header("idempotency-key", "key-1")
        .header("x-content-sha256", "00".repeat(32))
        .body(streamed(input.iter().cloned().map(Ok).collect()))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("<Id>generated$Id</Id><Url /></Image>"),
        "{body:?}"
    );

    let seen = recorded.recv().await.unwrap();
    assert!(seen.ended_cleanly);
    assert_eq!(seen.authorization.as_deref(), Some("Bearer a.b.c"));
    let header = seen.header.unwrap();
    assert_eq!(header.content_type, "image/png");
    assert_eq!(header.idempotency_key, "key-1");
    assert_eq!(header.sha256, vec![0; 32]);
    assert_eq!(
        header.declared_size, 0,
        "a streamed body has no Content-Length"
    );
    assert!(seen.chunk_sizes.iter().all(|&size| size <= 262_144));
    assert_eq!(seen.bytes, input.concat());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_the_service_sees_a_failed_stream() {
    let (router, mut recorded) = gateway_with_recorder().await;
    let input = frames(&[5 * 1024 * 1024, 5 * 1024 * 1024, 1, 1024]);
    let request = Request::post("/api/image/v1.0/report/R1")
        .header(header::CONTENT_TYPE, "application/pdf")
        .body(streamed(input.into_iter().map(Ok).collect()))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let seen = recorded.recv().await.unwrap();
    assert!(
        !seen.ended_cleanly,
        "an oversized upload must not look complete"
    );
    assert!(seen.bytes.len() <= 10 * 1024 * 1024);
}

#[tokio::test]
async fn a_body_that_breaks_off_is_400_and_the_service_never_sees_a_complete_stream() {
    for first in [300_000, 3 * 1024 * 1024] {
        let (router, mut recorded) = gateway_with_recorder().await;
        let request = Request::post("/api/image/v1.0/expenseentry/E1")
            .header(header::CONTENT_TYPE, "image/jpeg")
            .body(streamed(vec![
                Ok(Bytes::from(vec![7; first])),
                Err(std::io::Error::other("client went away")),
            ]))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // A stream reset before the service read anything never reaches its handler at all;
        // either way, it must not end cleanly.
        let seen = tokio::time::timeout(Duration::from_secs(2), recorded.recv()).await;
        if let Ok(Some(seen)) = seen {
            assert!(
                !seen.ended_cleanly,
                "a truncated upload must not look complete"
            );
        }
    }
}

#[tokio::test]
async fn an_aborted_upload_call_finishes_with_an_error_instead_of_hanging() {
    let (url, _recorded) = start_recorder().await;
    let channel = crate::ingest::connect_lazy(&url, Duration::from_secs(5)).unwrap();
    let ingest = crate::ingest::Ingest::new(channel, Duration::from_secs(60));
    for chunks in [0, 40] {
        let (sender, upload) = super::stream::channel();
        let call = tokio::spawn({
            let ingest = ingest.clone();
            async move { ingest.upload(None, upload).await }
        });
        sender.header(UploadHeader::default()).await.unwrap();
        for _ in 0..chunks {
            sender.chunk(Bytes::from(vec![1; 262_144])).await.unwrap();
        }
        drop(sender);
        let answered = tokio::time::timeout(Duration::from_secs(5), call).await;
        assert!(matches!(answered, Ok(Ok(Err(_)))), "{chunks}: {answered:?}");
    }
}

#[tokio::test]
async fn a_multipart_file_field_is_streamed_with_its_part_type_and_name() {
    let (router, mut recorded) = gateway_with_recorder().await;
    let file = vec![9u8; 700_000];
    let mut body = b"--B\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n".to_vec();
    body.extend_from_slice(
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.JPG\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    body.extend_from_slice(&file);
    body.extend_from_slice(b"\r\n--B--\r\n");
    let request = Request::post("/api/v1/client/workspace/ws1/expenses/exp1/receipt")
        .header(header::AUTHORIZATION, "Bearer t")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=B")
        .body(Body::from(body))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    // The recorder has no GetImage, so the URL stays empty, but the upload is a 201.
    assert_eq!(response.status(), StatusCode::CREATED);

    let seen = recorded.recv().await.unwrap();
    assert!(seen.ended_cleanly);
    let header = seen.header.unwrap();
    assert_eq!(header.content_type, "image/jpeg");
    assert_eq!(header.file_name, "r.JPG");
    let target = header.target.unwrap();
    assert_eq!(
        (target.id.as_str(), target.workspace_id.as_str()),
        ("exp1", "ws1")
    );
    assert_eq!(seen.authorization.as_deref(), Some("Bearer t"));
    assert!(seen.chunk_sizes.iter().all(|&size| size <= 262_144));
    assert_eq!(seen.bytes, file);
}
