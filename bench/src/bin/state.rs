//! `state`: what the state backend costs per upload.
//!
//! 1. The embedded default as it grows: the release `ingest-service` on a database that already
//!    holds 1,000, then 100,000 receipts (loaded through the legacy-JSON migration, one
//!    transaction), timing small receipt uploads one after another. The two medians should be
//!    within 1.3x of each other: every state operation is O(log n).
//! 2. Redis, Redis Cluster (three primaries) and the embedded database behind the same service
//!    and the same filesystem storage, at concurrency 1 and 8.
//!
//! Build first: `cargo build --release --bin ingest-service` and
//! `cargo build --release -p imaging-bench --bins`; then `target/release/state`.

use anyhow::{Context, bail};
use clap::Parser;
use imaging_bench::stack::{ChildGuard, StackOptions, authorized};
use imaging_bench::table::Table;
use imaging_e2e::fixtures::jpeg;
use imaging_e2e::{RedisCluster, RedisServer, free_port};
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::target_registry_client::TargetRegistryClient;
use imaging_proto::v1::upload_image_request::Part;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Dev-only secret shared by the service and the bench's tokens.
const SECRET: &str = "bench-state-secret";
/// Workspace of every upload.
const WORKSPACE: &str = "bench";

#[derive(Debug, Parser)]
#[command(about = "Per-upload cost of the state backends")]
struct Cli {
    /// Uploads timed per row.
    #[arg(long, default_value_t = 300)]
    uploads: usize,
    /// Receipts stored beforehand in the large embedded database.
    #[arg(long, default_value_t = 100_000)]
    stored: usize,
    /// A much shorter run to check that everything works.
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.quick {
        cli.uploads = 40;
        cli.stored = 10_000;
    }
    let options = StackOptions {
        bin_dir: StackOptions::default_bin_dir()?,
        secret: SECRET.to_owned(),
        quota_bytes: 1 << 40,
    };
    let receipt = jpeg(320, 240);
    println!(
        "State benchmark: {} cores; a {}-byte receipt JPEG per upload, {} uploads per row.\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        receipt.len(),
        cli.uploads
    );

    let mut growth = Table::new(&[
        "backend",
        "receipts stored",
        "C",
        "uploads",
        "p50 ms",
        "p90 ms",
        "uploads/s",
        "p50 vs 1,000 stored",
    ]);
    let mut small = None;
    for stored in [1_000, cli.stored] {
        let dir = tempfile::tempdir()?;
        prefill(dir.path(), stored)?;
        let service = Service::start(&options, dir.path(), &[]).await?;
        let run = service.run(&receipt, cli.uploads, 1).await?;
        let baseline = *small.get_or_insert(run.p50);
        growth.row([
            "embedded".to_owned(),
            thousands(stored),
            "1".to_owned(),
            cli.uploads.to_string(),
            format!("{:.2}", run.p50),
            format!("{:.2}", run.p90),
            format!("{:.1}", run.rate),
            format!("{:.2}", run.p50 / baseline),
        ]);
    }
    println!("{}", growth.render());

    let mut backends = Table::new(&[
        "state backend",
        "C",
        "uploads",
        "p50 ms",
        "p90 ms",
        "uploads/s",
        "uploads/s vs embedded",
    ]);
    for concurrency in [1, 8] {
        let mut embedded_rate = None;
        for backend in ["embedded", "Redis", "Redis Cluster (3 primaries)"] {
            let dir = tempfile::tempdir()?;
            let mut _redis = None;
            let mut _cluster = None;
            let url = match backend {
                "Redis" => Some(_redis.insert(RedisServer::start()).url()),
                "embedded" => None,
                _ => Some(_cluster.insert(RedisCluster::start()).url()),
            };
            let env: Vec<(&str, &str)> = match &url {
                Some(url) => vec![
                    ("APP__STATE__BACKEND", "redis"),
                    ("APP__STATE__URL", url.as_str()),
                ],
                None => Vec::new(),
            };
            let service = Service::start(&options, dir.path(), &env).await?;
            service.register().await?;
            let run = service.run(&receipt, cli.uploads, concurrency).await?;
            let base = *embedded_rate.get_or_insert(run.rate);
            backends.row([
                backend.to_owned(),
                concurrency.to_string(),
                cli.uploads.to_string(),
                format!("{:.2}", run.p50),
                format!("{:.2}", run.p90),
                format!("{:.1}", run.rate),
                format!("{:.2}", run.rate / base),
            ]);
        }
    }
    println!("{}", backends.render());
    Ok(())
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Writes a `state.json` of the earlier format holding `stored` receipt records; the service
/// migrates it into its database, in one transaction, when it first starts.
fn prefill(dir: &Path, stored: usize) -> anyhow::Result<()> {
    let mut images = serde_json::Map::new();
    for n in 0..stored {
        let id = format!("{n:032x}");
        images.insert(
            format!("RECEIPT:{id}"),
            serde_json::json!({
                "image_id": id,
                "key": format!("ws/{WORKSPACE}/receipts/{id}/{id}.jpg"),
                "workspace": WORKSPACE,
                "owner": format!("user{}", n % 100),
                "content_type": "image/jpeg",
                "size": 20_000,
                "width": 320,
                "height": 240,
                "page_count": 1,
                "sha256": "00",
            }),
        );
    }
    let state = serde_json::json!({
        "limits": {WORKSPACE: 1u64 << 40},
        "used": {WORKSPACE: 20_000 * stored as u64},
        "images": images,
    });
    std::fs::write(dir.join("state.json"), serde_json::to_vec(&state)?)
        .context("writing the prefilled state")
}

/// One release `ingest-service` on filesystem storage in `dir`.
struct Service {
    _child: ChildGuard,
    channel: Channel,
}

/// Latencies of one row.
struct Run {
    p50: f64,
    p90: f64,
    rate: f64,
}

impl Service {
    async fn start(
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
            .env("APP__LIMITS__MAX_UPLOADS_PER_USER", "64")
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
        Ok(Self {
            _child: child,
            channel,
        })
    }

    fn token(sub: &str, ws: &str, roles: &[&str]) -> anyhow::Result<String> {
        let claims = imaging_service::auth::Claims::expiring_in(sub, ws, roles, &[], 86_400);
        imaging_service::auth::mint_hs256(SECRET, &claims)
    }

    /// Registers the workspace (a prefilled database has it already).
    async fn register(&self) -> anyhow::Result<()> {
        let request = v1::RegisterWorkspaceRequest {
            workspace_id: WORKSPACE.to_owned(),
            quota_bytes: 1 << 40,
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
    async fn run(&self, bytes: &[u8], uploads: usize, concurrency: usize) -> anyhow::Result<Run> {
        // A few uploads first, untimed: connections and caches warm up.
        self.uploads(bytes, 3, 1).await?;
        let started = Instant::now();
        let mut times = self.uploads(bytes, uploads, concurrency).await?;
        let elapsed = started.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        Ok(Run {
            p50: at(0.5),
            p90: at(0.9),
            rate: uploads as f64 / elapsed,
        })
    }

    async fn uploads(
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
