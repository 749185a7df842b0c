//! `events`: what announcing every change costs, and how fast an event arrives. The release
//! `ingest-service` on S3 + Redis takes small receipt uploads over gRPC at C=16, in alternating
//! rounds with the outbox off (`events.outbox = false`: no event written) and on (every commit
//! appends its event in the same script; the relay publishes it to a real `nats-server -js`).
//!
//! First table: uploads per second and the service's CPU time per upload, each mode's rounds
//! summed, and the ratio on / off. Second table: the time from an event's `time` (taken just
//! before its commit, by the service on this machine) to its arrival at a JetStream consumer
//! (a pull consumer reading the stream from the start), p50 and p99, under that load.
//!
//! Build first: `cargo build --release --bin ingest-service --bin gateway --bin imaging-cli` and
//! `cargo build --release -p imaging-bench --bins`; then `target/release/events`.

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use imaging_bench::memory::cpu_time;
use imaging_bench::stack::{Stack, StackOptions};
use imaging_bench::table::Table;
use imaging_bench::uploads::load::{grpc_upload, upload_messages};
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WORKSPACE: &str = "bench";

#[derive(Debug, Parser)]
#[command(about = "Uploads per second with the outbox on and off; event latency to a consumer")]
struct Cli {
    /// Uploads per round.
    #[arg(long, default_value_t = 400)]
    uploads: usize,
    /// Rounds per mode (alternating off, on).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Clients at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// A short run to check that everything works.
    #[arg(long)]
    quick: bool,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Reads every event of the stream as it arrives; for each, its `time` and the ms from it to its
/// arrival.
async fn consume(url: String, latencies: Arc<Mutex<Vec<(f64, f64)>>>) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let stream = loop {
        if let Ok(stream) = jetstream.get_stream("IMAGING_EVENTS").await {
            break stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|err| anyhow::anyhow!("{err}"))?;
        let arrived = now_ms();
        let event: serde_json::Value = serde_json::from_slice(&message.payload)?;
        let at = event["time"].as_str().context("an event time")?;
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)?;
        let at_ms = at.unix_timestamp_nanos() as f64 / 1e6;
        latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push((at_ms, arrived - at_ms));
    }
    Ok(())
}

struct Round {
    wall: Duration,
    cpu: Duration,
}

async fn round(
    client: &ImageIngestClient<tonic::transport::Channel>,
    token: &str,
    files: &[Bytes],
    uploads: usize,
    concurrency: usize,
    service: u32,
) -> anyhow::Result<Round> {
    let cpu = cpu_time(service)?;
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..uploads)
        .map(|n| async move {
            let bytes = &files[n % files.len()];
            let target = v1::Target {
                kind: v1::TargetKind::Receipt as i32,
                ..Default::default()
            };
            let messages =
                upload_messages(target, bytes, "image/png", "scan.png", bytes.len() as u64);
            grpc_upload(client, token, messages)
                .await?
                .map_err(|status| anyhow::anyhow!("upload refused: {status:?}"))?;
            Ok(())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(Round {
        wall,
        cpu: cpu_time(service)? - cpu,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.quick {
        cli.uploads = 60;
        cli.rounds = 1;
    }
    let nats = imaging_e2e::NatsServer::start();
    let mode_env = |outbox: bool| {
        vec![
            ("APP__EVENTS__OUTBOX".to_owned(), outbox.to_string()),
            ("APP__EVENTS__NATS_URL".to_owned(), nats.url()),
        ]
    };
    let mut stack = Stack::start(StackOptions {
        bin_dir: StackOptions::default_bin_dir()?,
        s3_payload: "checksum".to_owned(),
        secret: "bench-only-secret".to_owned(),
        quota_bytes: 1 << 40,
        service_env: mode_env(false),
        service_wrapper: Vec::new(),
    })
    .await?;
    let mut registry = stack.registry().await?;
    registry.workspace(WORKSPACE, 1 << 40).await?;
    let token = stack.token("bench-user", WORKSPACE, "", "")?;
    // Distinct small scans (noise PNGs of 24 to 60 KB), so that each is a new receipt.
    let files: Vec<Bytes> = (0..64)
        .map(|n| Bytes::from(imaging_fixtures::noise_png(80 + 2 * n)))
        .collect();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let consumer = tokio::spawn(consume(nats.url(), latencies.clone()));
    println!(
        "Events: {} receipt uploads per round ({} to {} bytes), {} rounds per mode, C={}, gRPC \
         to the release service on S3 + Redis; NATS JetStream (nats-server -js) for the events.\n",
        cli.uploads,
        files.iter().map(Bytes::len).min().unwrap_or(0),
        files.iter().map(Bytes::len).max().unwrap_or(0),
        cli.rounds,
        cli.concurrency
    );
    let mut totals = [(Duration::ZERO, Duration::ZERO); 2];
    // The measured rounds' windows (ms since 1970) with the outbox on, and every event expected.
    let mut windows: Vec<(f64, f64)> = Vec::new();
    let mut expected = 0;
    for _ in 0..cli.rounds {
        for (mode, outbox) in [false, true].into_iter().enumerate() {
            stack.set_service_env(mode_env(outbox));
            stack.restart_service().await?;
            let client = ImageIngestClient::connect(stack.grpc_url()).await?;
            let service = stack.service_pid();
            // Warm-up (connections, scripts, the stream).
            round(
                &client,
                &token,
                &files,
                cli.concurrency,
                cli.concurrency,
                service,
            )
            .await?;
            let from = now_ms();
            let measured = round(
                &client,
                &token,
                &files,
                cli.uploads,
                cli.concurrency,
                service,
            )
            .await?;
            totals[mode].0 += measured.wall;
            totals[mode].1 += measured.cpu;
            if outbox {
                windows.push((from, now_ms()));
                expected += cli.concurrency + cli.uploads;
                // Every event arrives before the service is restarted.
                let deadline = Instant::now() + Duration::from_secs(120);
                while latencies
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .len()
                    < expected
                {
                    anyhow::ensure!(Instant::now() < deadline, "events missing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // The relay removes what it published and lets go of the outbox just after;
                // the restart kills the process, whose hold would otherwise lapse only after
                // its lease and delay the next round.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    consumer.abort();
    let n = (cli.uploads * cli.rounds) as f64;
    let rate = |mode: usize| n / totals[mode].0.as_secs_f64();
    let cpu_ms = |mode: usize| totals[mode].1.as_secs_f64() * 1e3 / n;
    let mut table = Table::new(&[
        "outbox (C=16)",
        "uploads/s",
        "÷ off",
        "service CPU ms/upload",
        "÷ off",
    ]);
    for (mode, label) in [
        "off (no event written)",
        "on (event in the commit, relayed to NATS)",
    ]
    .iter()
    .enumerate()
    {
        table.row([
            (*label).to_owned(),
            format!("{:.1}", rate(mode)),
            format!("{:.2}", rate(mode) / rate(0)),
            format!("{:.2}", cpu_ms(mode)),
            format!("{:.2}", cpu_ms(mode) / cpu_ms(0)),
        ]);
    }
    println!("{}", table.render());
    let mut latency: Vec<f64> = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .filter(|(at, _)| windows.iter().any(|(from, to)| at >= from && at <= to))
        .map(|(_, ms)| *ms)
        .collect();
    let mut table = Table::new(&["commit to JetStream consumer", "p50 ms", "p99 ms", "events"]);
    table.row([
        "under the load above".to_owned(),
        format!("{:.1}", percentile(&mut latency, 0.5)),
        format!("{:.1}", percentile(&mut latency, 0.99)),
        latency.len().to_string(),
    ]);
    println!("{}", table.render());
    Ok(())
}
