//! The gRPC edge: `ImageIngest` and `TargetRegistry` turn messages into domain calls on
//! [`crate::ingest::Ingestor`] and domain errors into `Status` (see `status`). Spans and stream
//! resets are handled for every RPC in [`layer`].

mod convert;
pub mod layer;
mod status;

use crate::auth::Claims;
use crate::error::IngestError;
use crate::ingest::Ingestor;
use crate::state::{DeliveryState, WebhookRecord};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use imaging_proto::v1;
use imaging_proto::v1::upload_image_request::Part;
use prost::Message as _;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// Both gRPC services share this state. Tokens are verified before a request gets here
/// ([`layer::AuthenticateLayer`]), which leaves the caller's [`Claims`] in its extensions.
#[derive(Debug, Clone)]
pub struct IngestApi {
    ingestor: Ingestor,
}

impl IngestApi {
    /// Wraps the domain.
    pub fn new(ingestor: Ingestor) -> Self {
        Self { ingestor }
    }

    /// The domain behind the API.
    pub fn ingestor(&self) -> &Ingestor {
        &self.ingestor
    }

    /// The status of a refused upload, sent once the client has finished sending: what it still
    /// sends is read and dropped, for at most [`DRAIN_TIME`] and the largest upload's size (a
    /// silent client is not waited for). Answered while the client is still sending, the stream
    /// has to be reset under it (HTTP/2 RST_STREAM), and some clients then report an error of
    /// their own (gRPC core: INTERNAL) instead of the status, or through the gateway, a reset
    /// connection instead of the 503.
    async fn refuse(
        &self,
        stream: &mut Streaming<v1::UploadImageRequest>,
        err: IngestError,
    ) -> Status {
        if !matches!(err, IngestError::UploadTimeout) {
            let limit = self.ingestor.limits.upload.max_bytes;
            let drain = async {
                let mut seen = 0u64;
                while let Ok(Some(message)) = stream.message().await {
                    seen += message.encoded_len() as u64;
                    if seen > limit {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        }
        err.into()
    }

    fn claims<T>(&self, request: &Request<T>) -> Result<Claims, IngestError> {
        request
            .extensions()
            .get::<Claims>()
            .cloned()
            .ok_or(IngestError::TokenMissing)
    }
}

impl IngestApi {
    /// `UploadImage` with an `upload_id`: a write to a session. Unlike a one-shot upload, the
    /// bytes that arrived before the stream broke are kept (the client resumes after them), so
    /// the write runs in a task of its own: the server drops a handler whose client reset the
    /// stream, and the task goes on to commit what arrived.
    async fn write_session(
        &self,
        claims: Claims,
        header: &v1::UploadHeader,
        mut stream: Streaming<v1::UploadImageRequest>,
    ) -> Result<Response<v1::UploadImageResponse>, Status> {
        let write = match convert::session_write(header) {
            Ok(write) => write,
            Err(err) => return Err(self.refuse(&mut stream, err).await),
        };
        let api = self.clone();
        let written = tokio::spawn(
            async move {
                let max_chunk = api.ingestor.limits.upload.max_chunk_bytes;
                let written = api
                    .ingestor
                    .write_session(claims, write, chunks(&mut stream, max_chunk))
                    .await;
                match written {
                    Ok(view) => Ok(convert::write_response(view)?),
                    Err(err) => Err(api.refuse(&mut stream, err).await),
                }
            }
            .in_current_span(),
        )
        .await
        .map_err(|err| Status::from(IngestError::Internal(format!("write task failed: {err}"))))?;
        written.map(Response::new)
    }
}

/// How long a refused upload's remaining messages are read and dropped (see
/// [`IngestApi::refuse`]).
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The error a failed request stream is: a message over the transport's size limit (which sits
/// just above the chunk limit) is a chunk too large; anything else is an invalid request.
fn stream_failed(status: &Status, max_chunk: usize) -> IngestError {
    // tonic: "Error, decoded message length too large: found N bytes, the limit is: M bytes".
    let message = status.message();
    if status.code() == tonic::Code::OutOfRange && message.contains("message length too large") {
        let size = message
            .split("found ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        return IngestError::ChunkTooLarge {
            size,
            limit: max_chunk,
        };
    }
    IngestError::invalid("", format!("the upload stream failed: {message}"))
}

/// The chunks after the header, as bytes; a second header or a failed stream is an error.
fn chunks(
    stream: &mut Streaming<v1::UploadImageRequest>,
    max_chunk: usize,
) -> impl Stream<Item = Result<Bytes, IngestError>> + Send + '_ {
    stream.filter_map(move |message| async move {
        match message {
            Ok(v1::UploadImageRequest {
                part: Some(Part::Chunk(chunk)),
            }) => Some(Ok(chunk)),
            Ok(v1::UploadImageRequest {
                part: Some(Part::Header(_)),
            }) => Some(Err(IngestError::invalid(
                "header",
                "a second header was sent",
            ))),
            Ok(v1::UploadImageRequest { part: None }) => None,
            Err(status) => Some(Err(stream_failed(&status, max_chunk))),
        }
    })
}

#[tonic::async_trait]
impl v1::image_ingest_server::ImageIngest for IngestApi {
    async fn upload_image(
        &self,
        request: Request<Streaming<v1::UploadImageRequest>>,
    ) -> Result<Response<v1::UploadImageResponse>, Status> {
        let claims = self.claims(&request)?;
        let mut stream = request.into_inner();
        let header = match stream.message().await {
            Ok(Some(v1::UploadImageRequest {
                part: Some(Part::Header(header)),
            })) => header,
            Ok(_) => {
                return Err(IngestError::invalid(
                    "header",
                    "the first message must be the upload header",
                )
                .into());
            }
            Err(status) => {
                let max_chunk = self.ingestor.limits.upload.max_chunk_bytes;
                return Err(stream_failed(&status, max_chunk).into());
            }
        };
        if !header.upload_id.is_empty() {
            return self.write_session(claims, &header, stream).await;
        }
        let header = match convert::upload_request(header) {
            Ok(header) => header,
            Err(err) => return Err(self.refuse(&mut stream, err).await),
        };
        if header.process_async {
            let max_chunk = self.ingestor.limits.upload.max_chunk_bytes;
            return match self
                .ingestor
                .accept(claims, header, chunks(&mut stream, max_chunk))
                .await
            {
                Ok(job) => Ok(Response::new(convert::accepted_response(&job))),
                Err(err) => Err(self.refuse(&mut stream, err).await),
            };
        }
        match self
            .ingestor
            .upload(
                claims,
                header,
                chunks(&mut stream, self.ingestor.limits.upload.max_chunk_bytes),
            )
            .await
        {
            Ok(uploaded) => Ok(Response::new(convert::upload_response(uploaded)?)),
            Err(err) => Err(self.refuse(&mut stream, err).await),
        }
    }

    async fn get_processing_status(
        &self,
        request: Request<v1::GetProcessingStatusRequest>,
    ) -> Result<Response<v1::ProcessingStatusInfo>, Status> {
        let claims = self.claims(&request)?;
        let job = self
            .ingestor
            .processing_status(&claims, &request.into_inner().id)
            .await?;
        Ok(Response::new(convert::processing_status(&job)))
    }

    async fn start_upload(
        &self,
        request: Request<v1::StartUploadRequest>,
    ) -> Result<Response<v1::UploadStatus>, Status> {
        let claims = self.claims(&request)?;
        let request = request.into_inner();
        let header = request
            .header
            .ok_or_else(|| IngestError::invalid("header", "header is required"))?;
        if !header.upload_id.is_empty()
            || header.write_offset != 0
            || header.finish_write
            || header.exact_offset
            || !header.write_sha1.is_empty()
            || !header.write_sha256.is_empty()
        {
            return Err(IngestError::invalid(
                "header",
                "a session is started without upload_id, write_offset or write fields",
            )
            .into());
        }
        let file_name = header.file_name.clone();
        let view = self
            .ingestor
            .start_session(
                claims,
                convert::upload_request(header)?,
                file_name,
                request.client_metadata,
            )
            .await?;
        Ok(Response::new(convert::upload_status(view)?))
    }

    async fn query_upload(
        &self,
        request: Request<v1::QueryUploadRequest>,
    ) -> Result<Response<v1::UploadStatus>, Status> {
        let claims = self.claims(&request)?;
        let request = request.into_inner();
        let view = self
            .ingestor
            .query_session(&claims, &request.upload_id)
            .await?;
        Ok(Response::new(convert::upload_status(view)?))
    }

    async fn cancel_upload(
        &self,
        request: Request<v1::CancelUploadRequest>,
    ) -> Result<Response<v1::CancelUploadResponse>, Status> {
        let claims = self.claims(&request)?;
        let request = request.into_inner();
        let released_bytes = self
            .ingestor
            .cancel_session(&claims, &request.upload_id)
            .await?;
        Ok(Response::new(v1::CancelUploadResponse { released_bytes }))
    }

    async fn get_image(
        &self,
        request: Request<v1::GetImageRequest>,
    ) -> Result<Response<v1::ImageInfo>, Status> {
        let claims = self.claims(&request)?;
        let request = request.into_inner();
        let target = convert::target(request.target)?;
        let view = self
            .ingestor
            .get_image(&claims, &target, &request.owner)
            .await?;
        Ok(Response::new(convert::image_info(view)?))
    }

    async fn delete_image(
        &self,
        request: Request<v1::DeleteImageRequest>,
    ) -> Result<Response<v1::DeleteImageResponse>, Status> {
        let claims = self.claims(&request)?;
        let request = request.into_inner();
        let target = convert::target(request.target)?;
        let released_bytes = self
            .ingestor
            .delete_image(&claims, &target, &request.owner)
            .await?;
        Ok(Response::new(v1::DeleteImageResponse { released_bytes }))
    }

    async fn list_images(
        &self,
        request: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        let claims = self.claims(&request)?;
        let request = request.into_inner();
        if request.kind != v1::TargetKind::Receipt as i32 {
            return Err(IngestError::invalid("kind", "only RECEIPT images are listed").into());
        }
        let (ids, next) = self
            .ingestor
            .list_receipts(
                &claims,
                &request.owner,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(v1::ListImagesResponse {
            images: ids
                .into_iter()
                .map(|(image_id, listed_ms)| v1::ListedImage {
                    image_id,
                    listed_at_ms: i64::try_from(listed_ms).unwrap_or(i64::MAX),
                })
                .collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn get_usage(
        &self,
        request: Request<v1::GetUsageRequest>,
    ) -> Result<Response<v1::Usage>, Status> {
        let claims = self.claims(&request)?;
        let workspace_id = request.into_inner().workspace_id;
        let usage = self.ingestor.usage(&claims, &workspace_id).await?;
        Ok(Response::new(v1::Usage {
            workspace_id,
            limit_bytes: usage.limit,
            used_bytes: usage.used,
        }))
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
            .register_workspace(
                &claims,
                &body.workspace_id,
                body.quota_bytes,
                body.refuse_duplicates,
            )
            .await?;
        Ok(Response::new(v1::RegisterWorkspaceResponse { quota_bytes }))
    }

    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::ReconcileResponse>, Status> {
        let claims = self.claims(&request)?;
        let done = self
            .ingestor
            .reconcile(&claims, request.into_inner().dry_run)
            .await?;
        Ok(Response::new(v1::ReconcileResponse {
            drifts: done
                .drifts
                .into_iter()
                .map(|drift| v1::WorkspaceDrift {
                    workspace_id: drift.workspace,
                    recorded_bytes: drift.recorded,
                    actual_bytes: drift.actual,
                    repaired: drift.repaired,
                })
                .collect(),
            list_entries_added: done.listings.added as u64,
            list_entries_removed: done.listings.removed as u64,
        }))
    }

    async fn sweep(
        &self,
        request: Request<v1::SweepRequest>,
    ) -> Result<Response<v1::SweepResponse>, Status> {
        let claims = self.claims(&request)?;
        let seconds = match request.into_inner().older_than_seconds {
            0 => 3600,
            seconds => seconds,
        };
        let (leftovers, orphans, sessions) = self
            .ingestor
            .sweep(&claims, Duration::from_secs(seconds))
            .await?;
        Ok(Response::new(v1::SweepResponse {
            leftovers_removed: leftovers,
            orphans_removed: orphans,
            sessions_removed: sessions,
        }))
    }

    async fn register_webhook(
        &self,
        request: Request<v1::RegisterWebhookRequest>,
    ) -> Result<Response<v1::Webhook>, Status> {
        let claims = self.claims(&request)?;
        let body = request.into_inner();
        let hook = self
            .ingestor
            .register_webhook(&claims, &body.workspace_id, &body.url, &body.secret)
            .await?;
        let secret = hook.secret.clone();
        Ok(Response::new(v1::Webhook {
            secret,
            ..webhook_message(hook)
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<v1::ListWebhooksRequest>,
    ) -> Result<Response<v1::ListWebhooksResponse>, Status> {
        let claims = self.claims(&request)?;
        let hooks = self
            .ingestor
            .list_webhooks(&claims, &request.into_inner().workspace_id)
            .await?;
        Ok(Response::new(v1::ListWebhooksResponse {
            webhooks: hooks.into_iter().map(webhook_message).collect(),
        }))
    }

    async fn remove_webhook(
        &self,
        request: Request<v1::RemoveWebhookRequest>,
    ) -> Result<Response<v1::RemoveWebhookResponse>, Status> {
        let claims = self.claims(&request)?;
        let body = request.into_inner();
        self.ingestor
            .remove_webhook(&claims, &body.workspace_id, &body.webhook_id)
            .await?;
        Ok(Response::new(v1::RemoveWebhookResponse {}))
    }

    async fn list_deliveries(
        &self,
        request: Request<v1::ListDeliveriesRequest>,
    ) -> Result<Response<v1::ListDeliveriesResponse>, Status> {
        let claims = self.claims(&request)?;
        let body = request.into_inner();
        let deliveries = self
            .ingestor
            .list_deliveries(&claims, &body.workspace_id, &body.webhook_id, body.limit)
            .await?;
        Ok(Response::new(v1::ListDeliveriesResponse {
            deliveries: deliveries
                .into_iter()
                .map(|d| v1::WebhookDelivery {
                    event_id: d.event_id,
                    event_type: d.event_type,
                    status: match d.state {
                        DeliveryState::Pending => v1::DeliveryStatus::DeliveryPending,
                        DeliveryState::Delivered => v1::DeliveryStatus::DeliveryDelivered,
                        DeliveryState::Failed => v1::DeliveryStatus::DeliveryFailed,
                    }
                    .into(),
                    attempts: d.attempts,
                    last_status_code: u32::from(d.last_code),
                    last_error: d.last_error,
                    created_at_ms: ms(d.created_ms),
                    next_attempt_at_ms: if d.state == DeliveryState::Pending {
                        ms(d.next_ms)
                    } else {
                        0
                    },
                    finished_at_ms: ms(d.finished_ms),
                })
                .collect(),
        }))
    }
}

/// A webhook as listed (its secret left out).
fn webhook_message(hook: WebhookRecord) -> v1::Webhook {
    v1::Webhook {
        id: hook.id,
        workspace_id: hook.workspace,
        url: hook.url,
        secret: String::new(),
        created_at_ms: ms(hook.created_ms),
    }
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
