//! The load generator: N uploads of one payload at concurrency C through one route (gRPC to the
//! ingest service, REST through the gateway, or a plain S3 PUT), timed one by one.

use crate::stack::authorized;
use anyhow::{Context, bail};
use bytes::Bytes;
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::upload_image_request::Part;
use s3::Bucket;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Size of the chunks of a gRPC upload stream.
pub const GRPC_CHUNK_BYTES: usize = 64 * 1024;

/// How long one upload may take before the phase fails.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// How an upload reaches storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Client-streaming `UploadImage` straight to the ingest service.
    Grpc,
    /// HTTP through the REST gateway (Concur raw body, or workspace multipart).
    Gateway,
    /// A plain S3 PUT of the same bytes to the same S3 server by rust-s3, which hashes every
    /// body (SHA-256 for the signature, and MD5): the earlier, generous baseline.
    S3,
    /// A PUT of the same bytes to a presigned URL with a plain HTTP client, which hashes
    /// nothing (`UNSIGNED-PAYLOAD`): the fair baseline, what a direct upload costs.
    S3Presigned,
}

impl Route {
    /// Label in tables.
    pub fn label(self) -> &'static str {
        match self {
            Route::Grpc => "gRPC",
            Route::Gateway => "gateway",
            Route::S3 => "S3 PUT (rust-s3, hashing)",
            Route::S3Presigned => "S3 presigned PUT (no hashing)",
        }
    }

    /// A direct PUT to the S3 server, not through the service.
    pub fn is_direct(self) -> bool {
        matches!(self, Route::S3 | Route::S3Presigned)
    }
}

/// What is uploaded, and what the service does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A PDF attached to expense entries: checked and stored as sent.
    PassThrough,
    /// A camera JPEG to workspace expenses: converted to WebP (long edge 2048, q80).
    Converting,
    /// A small receipt JPEG as a new Concur receipt: checked and stored as sent.
    Receipt,
}

impl Workload {
    /// Label in tables.
    pub fn label(self) -> &'static str {
        match self {
            Workload::PassThrough => "pass-through",
            Workload::Converting => "converting",
            Workload::Receipt => "receipt",
        }
    }
}

/// A file to upload.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The bytes.
    pub bytes: Bytes,
    /// Their content type.
    pub content_type: &'static str,
    /// File name sent along.
    pub file_name: &'static str,
}

/// Everything a worker needs to upload: one gRPC channel (HTTP/2, shared by all workers as an
/// internal caller would), one HTTP connection pool, one S3 client.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Ingest service client.
    pub grpc: ImageIngestClient<Channel>,
    /// HTTP client for the gateway.
    pub http: reqwest::Client,
    /// Bucket of the S3 server, for the baseline.
    pub s3: Box<Bucket>,
    /// Gateway base URL.
    pub gateway_url: String,
    /// User token (owner of the targets, `owner` role with `financial` in the workspace).
    pub token: String,
    /// Workspace of the targets.
    pub workspace: String,
}

/// Which target each upload goes to.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Upload `i` goes to ID `i` (expense entries: one image each).
    PerUpload(Vec<String>),
    /// Worker `w` sends all its uploads to ID `w` (workspace expenses: replaced each time).
    PerWorker(Vec<String>),
    /// S3 keys `{prefix}/{i}`.
    Keys(String),
}

impl Targets {
    fn id(&self, upload: usize, worker: usize) -> anyhow::Result<String> {
        let id = match self {
            Targets::PerUpload(ids) => ids.get(upload),
            Targets::PerWorker(ids) => ids.get(worker),
            Targets::Keys(prefix) => return Ok(format!("{prefix}/{upload}")),
        };
        id.cloned()
            .with_context(|| format!("no target for upload {upload} of worker {worker}"))
    }
}

/// One row of the benchmark: a route, a workload, a concurrency and a number of uploads.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Route.
    pub route: Route,
    /// Workload.
    pub workload: Workload,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// Uploads in all.
    pub uploads: usize,
    /// What each upload sends.
    pub payload: Payload,
    /// Where each upload goes.
    pub targets: Targets,
}

/// What a phase measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The phase's route.
    pub route: Route,
    /// The phase's workload.
    pub workload: Workload,
    /// Concurrency.
    pub concurrency: usize,
    /// Uploads done.
    pub uploads: usize,
    /// Input bytes per upload.
    pub bytes_each: usize,
    /// From the first upload's start to the last one's end.
    pub wall: Duration,
    /// Each upload's latency, sorted.
    pub latencies: Vec<Duration>,
}

impl Measured {
    /// Uploads per second.
    pub fn uploads_per_second(&self) -> f64 {
        self.uploads as f64 / self.wall.as_secs_f64()
    }

    /// Input megabytes (10^6 bytes) per second.
    pub fn megabytes_per_second(&self) -> f64 {
        (self.uploads * self.bytes_each) as f64 / 1e6 / self.wall.as_secs_f64()
    }

    /// Latency at percentile `p` (0-100), nearest rank.
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies[rank.clamp(1, n) - 1]
    }
}

/// Runs `phase`: `concurrency` workers take uploads from a shared counter until `uploads` are
/// done. Any failed upload fails the phase (a refusal is not a measurement).
pub async fn run(clients: &Clients, phase: &Phase) -> anyhow::Result<Measured> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let started = Instant::now();
    for worker in 0..phase.concurrency {
        let (clients, phase, next) = (clients.clone(), phase.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let upload = next.fetch_add(1, Ordering::Relaxed);
                if upload >= phase.uploads {
                    return anyhow::Ok(latencies);
                }
                let target = phase.targets.id(upload, worker)?;
                let begun = Instant::now();
                tokio::time::timeout(UPLOAD_TIMEOUT, upload_once(&clients, &phase, &target))
                    .await
                    .map_err(|_| anyhow::anyhow!("timed out after {UPLOAD_TIMEOUT:?}"))
                    .and_then(|done| done)
                    .with_context(|| {
                        format!(
                            "{} {} upload {upload} to {target}",
                            phase.route.label(),
                            phase.workload.label()
                        )
                    })?;
                latencies.push(begun.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(phase.uploads);
    while let Some(joined) = workers.join_next().await {
        latencies.extend(joined.context("upload worker panicked")??);
    }
    let wall = started.elapsed();
    latencies.sort();
    Ok(Measured {
        route: phase.route,
        workload: phase.workload,
        concurrency: phase.concurrency,
        uploads: latencies.len(),
        bytes_each: phase.payload.bytes.len(),
        wall,
        latencies,
    })
}

/// The messages of one `UploadImage` stream: the header, then `bytes` in 64 KiB chunks
/// (slices of the same buffer, no copies).
pub fn upload_messages(
    target: v1::Target,
    bytes: &Bytes,
    content_type: &str,
    file_name: &str,
    declared_size: u64,
) -> Vec<v1::UploadImageRequest> {
    let header = v1::UploadHeader {
        target: Some(target),
        content_type: content_type.to_owned(),
        file_name: file_name.to_owned(),
        declared_size,
        ..Default::default()
    };
    let mut messages = Vec::with_capacity(bytes.len() / GRPC_CHUNK_BYTES + 2);
    messages.push(v1::UploadImageRequest {
        part: Some(Part::Header(header)),
    });
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + GRPC_CHUNK_BYTES).min(bytes.len());
        messages.push(v1::UploadImageRequest {
            part: Some(Part::Chunk(bytes.slice(start..end))),
        });
        start = end;
    }
    messages
}

/// One `UploadImage` call; the outer error is a local failure, the inner one the service's answer.
pub async fn grpc_upload(
    client: &ImageIngestClient<Channel>,
    token: &str,
    messages: Vec<v1::UploadImageRequest>,
) -> anyhow::Result<Result<v1::UploadImageResponse, tonic::Status>> {
    let request = authorized(token, futures::stream::iter(messages))?;
    Ok(client
        .clone()
        .upload_image(request)
        .await
        .map(tonic::Response::into_inner))
}

async fn upload_once(clients: &Clients, phase: &Phase, target: &str) -> anyhow::Result<()> {
    let payload = &phase.payload;
    let size = payload.bytes.len();
    match (phase.route, phase.workload) {
        (Route::Grpc, workload) => {
            let target = match workload {
                Workload::Receipt => v1::Target {
                    kind: v1::TargetKind::Receipt as i32,
                    ..Default::default()
                },
                Workload::PassThrough => v1::Target {
                    kind: v1::TargetKind::ExpenseEntry as i32,
                    id: target.to_owned(),
                    workspace_id: String::new(),
                },
                Workload::Converting => v1::Target {
                    kind: v1::TargetKind::WorkspaceExpense as i32,
                    id: target.to_owned(),
                    workspace_id: clients.workspace.clone(),
                },
            };
            let messages = upload_messages(
                target,
                &payload.bytes,
                payload.content_type,
                payload.file_name,
                size as u64,
            );
            let stored = grpc_upload(&clients.grpc, &clients.token, messages)
                .await?
                .map_err(|status| {
                    anyhow::anyhow!("refused: {:?} {}", status.code(), status.message())
                })?;
            let expected = match workload {
                Workload::PassThrough | Workload::Receipt => payload.content_type,
                Workload::Converting => "image/webp",
            };
            if stored.content_type != expected
                || (workload != Workload::Converting && stored.size_bytes != size as u64)
            {
                bail!(
                    "stored {} bytes of {}, expected {expected}",
                    stored.size_bytes,
                    stored.content_type
                );
            }
        }
        (Route::Gateway, Workload::PassThrough) => {
            let url = format!(
                "{}/api/image/v1.0/expenseentry/{target}",
                clients.gateway_url
            );
            let response = clients
                .http
                .post(url)
                .header("Authorization", format!("OAuth {}", clients.token))
                .header("Content-Type", payload.content_type)
                .body(payload.bytes.clone())
                .send()
                .await?;
            expect_created(response).await?;
        }
        (Route::Gateway, Workload::Converting) => {
            let url = format!(
                "{}/api/v1/client/workspace/{}/expenses/{target}/receipt",
                clients.gateway_url, clients.workspace
            );
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::from(payload.bytes.clone()),
                size as u64,
            )
            .file_name(payload.file_name)
            .mime_str(payload.content_type)?;
            let response = clients
                .http
                .post(url)
                .bearer_auth(&clients.token)
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await?;
            expect_created(response).await?;
        }
        (Route::Gateway, Workload::Receipt) => {
            let response = clients
                .http
                .post(format!("{}/api/image/v1.0/receipt", clients.gateway_url))
                .header("Authorization", format!("OAuth {}", clients.token))
                .header("Content-Type", payload.content_type)
                .body(payload.bytes.clone())
                .send()
                .await?;
            expect_created(response).await?;
        }
        (Route::S3Presigned, _) => {
            let url = clients.s3.presign_put(target, 600, None, None).await?;
            let response = clients
                .http
                .put(url)
                .header("Content-Type", payload.content_type)
                .body(payload.bytes.clone())
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            if !status.is_success() {
                bail!(
                    "presigned PUT answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        (Route::S3, _) => {
            let response = clients
                .s3
                .put_object_with_content_type(target, &payload.bytes, payload.content_type)
                .await?;
            if !(200..300).contains(&response.status_code()) {
                bail!("S3 PUT answered HTTP {}", response.status_code());
            }
        }
    }
    Ok(())
}

async fn expect_created(response: reqwest::Response) -> anyhow::Result<()> {
    let status = response.status();
    let body = response.text().await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("gateway answered {status}: {body}");
    }
    Ok(())
}
