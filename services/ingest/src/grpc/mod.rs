//! The gRPC edge: `ImageIngest` and `TargetRegistry` delegate to [`crate::ingest::Ingestor`].

mod convert;
mod status;

use crate::auth::{Claims, Verifier};
use crate::error::IngestError;
use crate::ingest::Ingestor;
use crate::state::ImageRecord;
use imaging_proto::v1;
use imaging_proto::v1::upload_image_request::Part;
use opentelemetry::KeyValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// A server span for `name`, parented on the caller's trace context, with its trace ID as a
/// field so every log line inside it carries the trace.
fn server_span(name: &'static str, metadata: &tonic::metadata::MetadataMap) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = name,
        otel.kind = "server",
        rpc.method = name,
        trace_id = tracing::field::Empty,
        kind = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    imaging_telemetry::extract(metadata, &span);
    span.record("trace_id", imaging_telemetry::trace_id(&span));
    span
}

fn stream_failed(status: Status) -> IngestError {
    IngestError::InvalidRequest(format!("the upload stream failed: {}", status.message()))
}

/// Both gRPC services share this state.
#[derive(Debug, Clone)]
pub struct IngestApi {
    ingestor: Ingestor,
    verifier: Verifier,
}

impl IngestApi {
    /// Wraps the domain and the token verifier.
    pub fn new(ingestor: Ingestor, verifier: Verifier) -> Self {
        Self { ingestor, verifier }
    }

    /// Receives and finishes one upload stream; `kind` is set once the header names it.
    async fn receive_upload(
        &self,
        request: Request<Streaming<v1::UploadImageRequest>>,
        kind: &mut &'static str,
    ) -> Result<(ImageRecord, bool), IngestError> {
        let claims = self.claims(&request)?;
        let admitted = self.ingestor.admit()?;
        let mut stream = request.into_inner();
        let header = match stream.message().await.map_err(stream_failed)? {
            Some(v1::UploadImageRequest {
                part: Some(Part::Header(header)),
            }) => header,
            _ => {
                return Err(IngestError::InvalidRequest(
                    "the first message must be the upload header".into(),
                ));
            }
        };
        let request = convert::upload_request(header)?;
        *kind = request.target.kind.name();
        let plan = self.ingestor.begin_upload(claims, request).await?;
        let mut receiver = self.ingestor.receiver(&plan);
        let received = async {
            while let Some(message) = stream.message().await.map_err(stream_failed)? {
                match message.part {
                    Some(Part::Chunk(chunk)) => receiver.push(&chunk)?,
                    Some(Part::Header(_)) => {
                        return Err(IngestError::InvalidRequest(
                            "a second header was sent".into(),
                        ));
                    }
                    None => {}
                }
            }
            Ok(())
        }
        .await;
        self.ingestor
            .metrics()
            .bytes_received
            .add(receiver.len(), &[KeyValue::new("kind", *kind)]);
        received?;
        let received = receiver.finish()?;
        // The whole upload has arrived: finish it even if the client goes away now, so the
        // guard's rollback and the locks never race with a cancelled future.
        let ingestor = self.ingestor.clone();
        tokio::spawn(
            async move {
                let result = ingestor.finish_upload(plan, received).await;
                drop(admitted);
                result
            }
            .in_current_span(),
        )
        .await
        .map_err(|err| IngestError::Internal(format!("upload task failed: {err}")))?
    }

    /// The domain behind the API.
    pub fn ingestor(&self) -> &Ingestor {
        &self.ingestor
    }

    fn claims<T>(&self, request: &Request<T>) -> Result<Claims, IngestError> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        self.verifier.verify_header(header)
    }
}

#[tonic::async_trait]
impl v1::image_ingest_server::ImageIngest for IngestApi {
    async fn upload_image(
        &self,
        request: Request<Streaming<v1::UploadImageRequest>>,
    ) -> Result<Response<v1::UploadImageResponse>, Status> {
        let span = server_span("imaging.v1.ImageIngest/UploadImage", request.metadata());
        let metrics = self.ingestor.metrics().clone();
        metrics.in_flight.add(1, &[]);
        let started = std::time::Instant::now();
        let mut kind = "UNKNOWN";
        let result = self
            .receive_upload(request, &mut kind)
            .instrument(span.clone())
            .await;
        metrics.in_flight.add(-1, &[]);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.reason(),
        };
        span.record("kind", kind);
        span.record("outcome", outcome);
        metrics.upload_finished(kind, outcome, started.elapsed().as_secs_f64());
        let (record, replayed) = result?;
        Ok(Response::new(convert::upload_response(record, replayed)))
    }

    async fn get_image(
        &self,
        request: Request<v1::GetImageRequest>,
    ) -> Result<Response<v1::ImageInfo>, Status> {
        let span = server_span("imaging.v1.ImageIngest/GetImage", request.metadata());
        async move {
            let claims = self.claims(&request)?;
            let target = convert::target(request.into_inner().target)?;
            let view = self.ingestor.get_image(&claims, &target).await?;
            Ok(Response::new(convert::image_info(view)))
        }
        .instrument(span)
        .await
    }

    async fn delete_image(
        &self,
        request: Request<v1::DeleteImageRequest>,
    ) -> Result<Response<v1::DeleteImageResponse>, Status> {
        let span = server_span("imaging.v1.ImageIngest/DeleteImage", request.metadata());
        async move {
            let claims = self.claims(&request)?;
            let target = convert::target(request.into_inner().target)?;
            let released_bytes = self.ingestor.delete_image(&claims, &target).await?;
            Ok(Response::new(v1::DeleteImageResponse { released_bytes }))
        }
        .instrument(span)
        .await
    }

    async fn get_usage(
        &self,
        request: Request<v1::GetUsageRequest>,
    ) -> Result<Response<v1::Usage>, Status> {
        let span = server_span("imaging.v1.ImageIngest/GetUsage", request.metadata());
        async move {
            let claims = self.claims(&request)?;
            let workspace_id = request.into_inner().workspace_id;
            let usage = self.ingestor.usage(&claims, &workspace_id).await?;
            Ok(Response::new(v1::Usage {
                workspace_id,
                limit_bytes: usage.limit,
                used_bytes: usage.used,
            }))
        }
        .instrument(span)
        .await
    }
}

#[tonic::async_trait]
impl v1::target_registry_server::TargetRegistry for IngestApi {
    async fn register_target(
        &self,
        request: Request<v1::RegisterTargetRequest>,
    ) -> Result<Response<v1::RegisterTargetResponse>, Status> {
        let claims = self.claims(&request)?;
        let body = request.into_inner();
        let target = convert::target(body.target)?;
        let created = self
            .ingestor
            .register_target(&claims, &target, &body.workspace_id, &body.owner)
            .await?;
        Ok(Response::new(v1::RegisterTargetResponse { created }))
    }

    async fn remove_target(
        &self,
        request: Request<v1::RemoveTargetRequest>,
    ) -> Result<Response<v1::RemoveTargetResponse>, Status> {
        let claims = self.claims(&request)?;
        let target = convert::target(request.into_inner().target)?;
        let removed = self.ingestor.remove_target(&claims, &target).await?;
        Ok(Response::new(v1::RemoveTargetResponse { removed }))
    }

    async fn register_workspace(
        &self,
        request: Request<v1::RegisterWorkspaceRequest>,
    ) -> Result<Response<v1::RegisterWorkspaceResponse>, Status> {
        let claims = self.claims(&request)?;
        let body = request.into_inner();
        let quota_bytes = self
            .ingestor
            .register_workspace(&claims, &body.workspace_id, body.quota_bytes)
            .await?;
        Ok(Response::new(v1::RegisterWorkspaceResponse { quota_bytes }))
    }
}
