//! The ingest service client: a pool of HTTP/2 connections (so that one client's streams cannot
//! fill the only connection's stream limit), the caller's token forwarded as
//! `authorization: Bearer <jwt>` metadata on every call.

use crate::upload::stream::{UploadCodec, UploadStream};
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::{
    CancelUploadRequest, DeleteImageRequest, DeleteImageResponse, GetImageRequest,
    GetProcessingStatusRequest, GetUsageRequest, ImageInfo, ListImagesRequest, ListImagesResponse,
    ProcessingStatusInfo, QueryUploadRequest, StartUploadRequest, Target, TargetKind, UploadHeader,
    UploadImageResponse, UploadStatus, Usage,
};
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{GrpcMethod, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Handle to the ingest service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    channel: Channel,
    timeout: Duration,
}

/// HTTP/2 connections the gateway keeps to the service; each call goes to the one with the
/// fewest calls in flight of two picked at random (power of two choices).
pub const POOL_CONNECTIONS: usize = 4;

/// A channel over [`POOL_CONNECTIONS`] connections to `url`, dialled in the background:
/// building never waits for the service. Must run inside a Tokio runtime.
///
/// No channel-wide timeout: tonic enforces one by dropping the call, which would end an
/// upload stream cleanly (see [`crate::upload::forward`]). Unary calls carry their own.
pub fn connect_lazy(url: &str, connect_timeout: Duration) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?.connect_timeout(connect_timeout);
    let (channel, connections) = Channel::balance_channel::<usize>(POOL_CONNECTIONS);
    for n in 0..POOL_CONNECTIONS {
        connections
            .try_send(tonic::transport::channel::Change::Insert(
                n,
                endpoint.clone(),
            ))
            .map_err(|_| anyhow::anyhow!("the connection pool could not be filled"))?;
    }
    // The pool's list of connections ends when its sender is dropped: keep it for as long as
    // the channel lives.
    tokio::spawn(async move { connections.closed().await });
    Ok(channel)
}

impl Ingest {
    /// A client over `channel`; each call (a whole upload included) may take `timeout`.
    pub fn new(channel: Channel, timeout: Duration) -> Self {
        Ingest { channel, timeout }
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Metadata and a fresh expiring URL of the target's image.
    pub async fn get_image(
        &self,
        token: Option<&str>,
        target: Target,
        owner: &str,
    ) -> Result<ImageInfo, Status> {
        let mut request = with_token(
            token,
            GetImageRequest {
                target: Some(target),
                owner: owner.to_owned(),
            },
        );
        request.set_timeout(self.timeout);
        Ok(self.client().get_image(request).await?.into_inner())
    }

    /// Deletes the target's image.
    pub async fn delete_image(
        &self,
        token: Option<&str>,
        target: Target,
        owner: &str,
    ) -> Result<DeleteImageResponse, Status> {
        let mut request = with_token(
            token,
            DeleteImageRequest {
                target: Some(target),
                owner: owner.to_owned(),
            },
        );
        request.set_timeout(self.timeout);
        Ok(self.client().delete_image(request).await?.into_inner())
    }

    /// A page of `owner`'s loose receipts (the caller's if empty), newest first.
    pub async fn list_receipts(
        &self,
        token: Option<&str>,
        owner: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListImagesResponse, Status> {
        let mut request = with_token(
            token,
            ListImagesRequest {
                kind: TargetKind::Receipt.into(),
                owner: owner.to_owned(),
                page_size,
                page_token: page_token.to_owned(),
            },
        );
        request.set_timeout(self.timeout);
        Ok(self.client().list_images(request).await?.into_inner())
    }

    /// Where a receipt accepted for asynchronous processing is.
    pub async fn processing_status(
        &self,
        token: Option<&str>,
        id: &str,
    ) -> Result<ProcessingStatusInfo, Status> {
        let mut request = with_token(token, GetProcessingStatusRequest { id: id.to_owned() });
        request.set_timeout(self.timeout);
        Ok(self
            .client()
            .get_processing_status(request)
            .await?
            .into_inner())
    }

    /// The workspace's quota limit and usage.
    pub async fn get_usage(
        &self,
        token: Option<&str>,
        workspace_id: &str,
    ) -> Result<Usage, Status> {
        let mut request = with_token(
            token,
            GetUsageRequest {
                workspace_id: workspace_id.to_owned(),
            },
        );
        request.set_timeout(self.timeout);
        Ok(self.client().get_usage(request).await?.into_inner())
    }

    /// Starts a resumable upload session.
    pub async fn start_upload(
        &self,
        token: Option<&str>,
        header: UploadHeader,
        client_metadata: String,
    ) -> Result<UploadStatus, Status> {
        let mut request = with_token(
            token,
            StartUploadRequest {
                header: Some(header),
                client_metadata,
            },
        );
        request.set_timeout(self.timeout);
        Ok(self.client().start_upload(request).await?.into_inner())
    }

    /// A session's state.
    pub async fn query_upload(
        &self,
        token: Option<&str>,
        upload_id: &str,
    ) -> Result<UploadStatus, Status> {
        let mut request = with_token(
            token,
            QueryUploadRequest {
                upload_id: upload_id.to_owned(),
            },
        );
        request.set_timeout(self.timeout);
        Ok(self.client().query_upload(request).await?.into_inner())
    }

    /// Cancels a session; the quota bytes it released.
    pub async fn cancel_upload(&self, token: Option<&str>, upload_id: &str) -> Result<u64, Status> {
        let mut request = with_token(
            token,
            CancelUploadRequest {
                upload_id: upload_id.to_owned(),
            },
        );
        request.set_timeout(self.timeout);
        Ok(self
            .client()
            .cancel_upload(request)
            .await?
            .into_inner()
            .released_bytes)
    }

    /// The UploadImage call over `upload` (see [`crate::upload::forward`], which owns its
    /// deadline). Uses [`UploadCodec`] rather than the generated client so that a failed
    /// upload resets the stream with an error instead of ending it.
    pub async fn upload(
        &self,
        token: Option<&str>,
        upload: UploadStream,
    ) -> Result<UploadImageResponse, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|error| Status::unavailable(format!("ingest service not ready: {error}")))?;
        let mut request = with_token(token, upload);
        request
            .extensions_mut()
            .insert(GrpcMethod::new("imaging.v1.ImageIngest", "UploadImage"));
        let path = http::uri::PathAndQuery::from_static("/imaging.v1.ImageIngest/UploadImage");
        Ok(grpc
            .client_streaming(request, path, UploadCodec)
            .await?
            .into_inner())
    }

    /// True if the service's gRPC health check answers SERVING within `within`.
    pub async fn is_ready(&self, within: Duration) -> bool {
        let mut health = HealthClient::new(self.channel.clone());
        let check = health.check(HealthCheckRequest {
            service: String::new(),
        });
        match tokio::time::timeout(within, check).await {
            Ok(Ok(response)) => response.into_inner().status() == ServingStatus::Serving,
            Ok(Err(status)) => {
                tracing::debug!(code = ?status.code(), "ingest health check failed");
                false
            }
            Err(_) => false,
        }
    }

    fn client(&self) -> ImageIngestClient<Channel> {
        ImageIngestClient::new(self.channel.clone())
    }
}

/// Wraps `message`, adding `authorization: Bearer <token>` if there is a usable token, and the
/// current trace context (`traceparent`) so the service continues this request's trace.
fn with_token<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    imaging_telemetry::inject(request.metadata_mut());
    if let Some(value) =
        token.and_then(|token| MetadataValue::try_from(format!("Bearer {token}")).ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_becomes_bearer_metadata_and_a_missing_one_adds_nothing() {
        let request = with_token(Some("abc.def"), ());
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer abc.def"
        );
        assert!(
            with_token(None, ())
                .metadata()
                .get("authorization")
                .is_none()
        );
        assert!(
            with_token(Some("bad\ntoken"), ())
                .metadata()
                .get("authorization")
                .is_none()
        );
    }
}
