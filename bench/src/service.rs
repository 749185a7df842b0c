//! One release `ingest-service` as a child process on filesystem storage (or, through its
//! environment, any backend), with the bench's tokens and a simple upload loop.

use crate::stack::{ChildGuard, StackOptions, authorized};
use anyhow::{Context, bail};
use imaging_e2e::free_port;
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::target_registry_client::TargetRegistryClient;
use imaging_proto::v1::upload_image_request::Part;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Dev-only secret shared by the service and the bench's tokens.
pub const SECRET: &str = "bench-state-secret";
/// Workspace of every upload.
pub const WORKSPACE: &str = "bench";

/// One release `ingest-service` on filesystem storage in `dir`.
pub struct Service {
    child: ChildGuard,
    channel: Channel,
}

/// Latencies of one row.
pub struct Run {
    /// Median latency, ms.
    pub p50: f64,
    /// 90th percentile latency, ms.
    pub p90: f64,
    /// Uploads per second.
    pub rate: f64,
}

impl Service {
    pub async fn start(
        options: &StackOptions,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = free_port();
        let binary = options.bin_dir.join("ingest-service");
        if !binary.is_file() {
            bail!(
                "{} not found; build it first: cargo build --release --bin ingest-service",
                binary.display()
            );
        }
        let mut command = Command::new(binary);
        command
            .env("APP__SERVER__GRPC_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "APP__SERVER__FILES_ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("APP__STORAGE__ROOT", dir.join("objects"))
            .env("APP__STATE__PATH", dir.join("state.redb"))
            .env("APP__AUTH__HS256_SECRET", SECRET)
            .env("APP__STORAGE__URL_SIGNING_KEY", "bench-url-signing-key")
            .env("APP__LIMITS__ADMISSION__MAX_PER_USER", "64")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = ChildGuard::spawn("ingest-service", &mut command)?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        let channel = loop {
            child.check_running()?;
            if let Ok(channel) = Channel::from_shared(url.clone())?.connect().await {
                break channel;
            }
            if Instant::now() > deadline {
                bail!("ingest-service did not answer on {url}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Self { child, channel })
    }

    pub fn token(sub: &str, ws: &str, roles: &[&str]) -> anyhow::Result<String> {
        let claims = ingest_service::auth::Claims::expiring_in(sub, ws, roles, &[], 86_400);
        ingest_service::auth::mint_hs256(SECRET, &claims)
    }

    /// Registers the workspace (a prefilled database has it already).
    pub async fn register(&self) -> anyhow::Result<()> {
        let request = v1::RegisterWorkspaceRequest {
            workspace_id: WORKSPACE.to_owned(),
            quota_bytes: 1 << 40,
            refuse_duplicates: None,
        };
        TargetRegistryClient::new(self.channel.clone())
            .register_workspace(authorized(
                &Self::token("bench-registry", "*", &["service"])?,
                request,
            )?)
            .await
            .context("registering the workspace")?;
        Ok(())
    }

    /// `uploads` receipt uploads by `concurrency` clients, each one after another.
    pub async fn run(
        &self,
        bytes: &[u8],
        uploads: usize,
        concurrency: usize,
    ) -> anyhow::Result<Run> {
        // A few uploads first, untimed: connections and caches warm up.
        self.uploads(bytes, 3, 1).await?;
        let started = Instant::now();
        let mut times = self.uploads(bytes, uploads, concurrency).await?;
        let elapsed = started.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        Ok(Run {
            p50: percentile(&times, 0.5),
            p90: percentile(&times, 0.9),
            rate: uploads as f64 / elapsed,
        })
    }

    pub async fn uploads(
        &self,
        bytes: &[u8],
        uploads: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<f64>> {
        let mut clients = Vec::new();
        for client in 0..concurrency {
            let count = uploads / concurrency + usize::from(client < uploads % concurrency);
            let channel = self.channel.clone();
            let bytes = bytes.to_vec();
            let token = Self::token(&format!("user{client}"), WORKSPACE, &[])?;
            clients.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(count);
                let mut ingest = ImageIngestClient::new(channel);
                for _ in 0..count {
                    let messages = vec![
                        v1::UploadImageRequest {
                            part: Some(Part::Header(v1::UploadHeader {
                                target: Some(v1::Target {
                                    kind: v1::TargetKind::Receipt as i32,
                                    ..Default::default()
                                }),
                                content_type: "image/jpeg".into(),
                                file_name: "receipt.jpg".into(),
                                declared_size: bytes.len() as u64,
                                ..Default::default()
                            })),
                        },
                        v1::UploadImageRequest {
                            part: Some(Part::Chunk(bytes.clone().into())),
                        },
                    ];
                    let started = Instant::now();
                    ingest
                        .upload_image(authorized(&token, tokio_stream::iter(messages))?)
                        .await
                        .context("upload")?;
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                anyhow::Ok(times)
            }));
        }
        let mut all = Vec::with_capacity(uploads);
        for client in clients {
            all.extend(client.await??);
        }
        Ok(all)
    }
}

impl Service {
    /// Times `calls` requests for the same page of `user0`'s receipts (`page_size`, after
    /// `page_token`), in ms, sorted.
    pub async fn list_pages(
        &self,
        page_size: i32,
        page_token: &str,
        calls: usize,
    ) -> anyhow::Result<Vec<f64>> {
        let token = Self::token("user0", WORKSPACE, &[])?;
        let mut client = ImageIngestClient::new(self.channel.clone());
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls + 5 {
            let request = v1::ListImagesRequest {
                kind: v1::TargetKind::Receipt as i32,
                owner: String::new(),
                page_size,
                page_token: page_token.to_owned(),
            };
            let started = Instant::now();
            let page = client
                .list_images(authorized(&token, request)?)
                .await
                .context("listing")?
                .into_inner();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if page.images.len() != page_size as usize {
                bail!("a page of {} instead of {page_size}", page.images.len());
            }
        }
        // The first calls warm the connection up.
        times.drain(..5);
        times.sort_by(f64::total_cmp);
        Ok(times)
    }

    /// Process ID of the service.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// A connected channel to the service.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

/// The `q` quantile (0 to 1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
