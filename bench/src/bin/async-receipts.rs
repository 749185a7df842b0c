//! `async-receipts`: Concur Receipts v4 (accepted with 202, processed later by the job queue)
//! against synchronous uploads of the same files (Receipt Image v3 POST, answered once stored),
//! through the real stack (release `ingest-service` on S3 + Redis with its default two workers,
//! release `gateway`, each a process), at a concurrency of 32 clients.
//!
//! The files: photos of 3000x2000 (JPEG; reduced to 2,200 px by v4) and small PNG scans, in
//! turn. First table: receipts answered per second by each route, the ratio to the synchronous
//! route, and the service's CPU time. Second table: latency under that load: POST to answer for
//! both, and for v4 POST to PROCESSED (the time of the status log's last line, written by the
//! service on the same machine), p50 and p99.
//!
//! Build first: `cargo build --release --bin ingest-service --bin gateway` and
//! `cargo build --release -p imaging-bench --bins`; then `target/release/async-receipts`.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use imaging_bench::memory::cpu_time;
use imaging_bench::stack::{Stack, StackOptions};
use imaging_bench::table::Table;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WORKSPACE: &str = "bench";

#[derive(Debug, Parser)]
#[command(about = "Concur Receipts v4 (asynchronous) against synchronous uploads at C=32")]
struct Cli {
    /// Receipts per route.
    #[arg(long, default_value_t = 256)]
    receipts: usize,
    /// Clients at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// A short run to check that everything works.
    #[arg(long)]
    quick: bool,
}

struct Bench {
    http: reqwest::Client,
    base: String,
    /// One token per client (the per-user upload cap is 8).
    tokens: Vec<String>,
    files: Vec<(&'static str, &'static str, Bytes)>,
}

/// One upload: when it was sent (ms since 1970), how long its answer took, and for v4 the
/// receipt's ID.
struct Sent {
    at_ms: f64,
    answered: Duration,
    id: Option<String>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

impl Bench {
    fn form(&self, n: usize) -> reqwest::multipart::Form {
        let (name, kind, bytes) = &self.files[n % self.files.len()];
        let part = reqwest::multipart::Part::stream(bytes.clone())
            .file_name(*name)
            .mime_str(kind)
            .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
        reqwest::multipart::Form::new().part("image", part)
    }

    async fn upload(&self, n: usize, client: usize, v4: bool) -> anyhow::Result<Sent> {
        let token = &self.tokens[client];
        let url = if v4 {
            format!(
                "{}/receipts/v4/users/user-{client}/image-only-receipts",
                self.base
            )
        } else {
            format!("{}/api/v3.0/expense/receiptimages", self.base)
        };
        let at_ms = now_ms();
        let started = Instant::now();
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .multipart(self.form(n))
            .send()
            .await?;
        let answered = started.elapsed();
        let expected = if v4 { 202 } else { 201 };
        if response.status() != expected {
            bail!(
                "{} answered {}: {}",
                if v4 { "v4" } else { "v3" },
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let id = if v4 {
            let location = response
                .headers()
                .get("location")
                .and_then(|value| value.to_str().ok())
                .context("no Location")?;
            Some(location.rsplit('/').next().unwrap_or_default().to_owned())
        } else {
            None
        };
        Ok(Sent {
            at_ms,
            answered,
            id,
        })
    }

    /// `count` uploads by `concurrency` clients; the uploads and the wall time.
    async fn run(
        &self,
        count: usize,
        concurrency: usize,
        v4: bool,
    ) -> anyhow::Result<(Vec<(usize, Sent)>, Duration)> {
        let started = Instant::now();
        let sent: Vec<anyhow::Result<(usize, Sent)>> = futures::stream::iter(0..count)
            .map(|n| async move {
                let client = n % concurrency;
                self.upload(n, client, v4).await.map(|sent| (client, sent))
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let wall = started.elapsed();
        Ok((sent.into_iter().collect::<anyhow::Result<_>>()?, wall))
    }

    /// The time of a processed receipt's last log line (ms since 1970), once it is PROCESSED.
    async fn processed_at(&self, client: usize, id: &str) -> anyhow::Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let status: serde_json::Value = self
                .http
                .get(format!("{}/receipts/v4/status/{id}", self.base))
                .bearer_auth(&self.tokens[client])
                .send()
                .await?
                .json()
                .await?;
            match status["status"].as_str() {
                Some("PROCESSED") => {
                    let last = status["logs"]
                        .as_array()
                        .and_then(|logs| logs.last())
                        .and_then(|line| line["timestamp"].as_str())
                        .context("no log")?;
                    return rfc3339_ms(last);
                }
                Some("FAILED") => bail!("receipt {id} FAILED: {status}"),
                _ if Instant::now() > deadline => bail!("receipt {id} never processed"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// `2026-12-02T16:09:45.123Z` as ms since 1970.
fn rfc3339_ms(text: &str) -> anyhow::Result<f64> {
    let (date, time) = text
        .trim_end_matches('Z')
        .split_once('T')
        .context("a time")?;
    let mut date = date.split('-').map(str::parse::<i64>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (date.next(), date.next(), date.next()) else {
        bail!("a date: {text}");
    };
    let mut time = time.split(':');
    let (Some(h), Some(min), Some(s)) = (time.next(), time.next(), time.next()) else {
        bail!("a time: {text}");
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + h.parse::<i64>()? * 3600 + min.parse::<i64>()? * 60;
    Ok(seconds as f64 * 1e3 + s.parse::<f64>()? * 1e3)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.quick {
        cli.receipts = 32;
    }
    let stack = Stack::start(StackOptions {
        bin_dir: StackOptions::default_bin_dir()?,
        s3_payload: "checksum".to_owned(),
        service_env: Vec::new(),
        service_wrapper: Vec::new(),
        secret: "bench-only-secret".to_owned(),
        quota_bytes: 1 << 40,
    })
    .await?;
    let mut registry = stack.registry().await?;
    registry.workspace(WORKSPACE, 1 << 40).await?;
    let tokens = (0..cli.concurrency)
        .map(|client| stack.token(&format!("user-{client}"), WORKSPACE, "", ""))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bench = Bench {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(cli.concurrency)
            .build()?,
        base: stack.gateway_url(),
        tokens,
        files: vec![
            (
                "photo.jpg",
                "image/jpeg",
                Bytes::from(imaging_fixtures::jpeg(3000, 2000)),
            ),
            (
                "scan.png",
                "image/png",
                Bytes::from(imaging_fixtures::png(800, 1100)),
            ),
        ],
    };
    let service = stack.service_pid();
    println!(
        "Asynchronous receipts: {} receipts per route ({} and {} bytes, in turn) from {} clients \
         at once, through the gateway (S3 + Redis; 2 workers), the synchronous route first.\n",
        cli.receipts,
        bench.files[0].2.len(),
        bench.files[1].2.len(),
        cli.concurrency
    );
    // Warm-up of both routes.
    bench.run(cli.concurrency, cli.concurrency, false).await?;
    let (warm, _) = bench.run(cli.concurrency, cli.concurrency, true).await?;
    for (client, sent) in &warm {
        bench
            .processed_at(*client, sent.id.as_deref().unwrap_or_default())
            .await?;
    }

    let cpu = cpu_time(service)?;
    let (sync_sent, sync_wall) = bench.run(cli.receipts, cli.concurrency, false).await?;
    let sync_cpu = cpu_time(service)? - cpu;

    let cpu = cpu_time(service)?;
    let (v4_sent, v4_wall) = bench.run(cli.receipts, cli.concurrency, true).await?;
    let accepted_cpu = cpu_time(service)? - cpu;
    let mut to_processed = Vec::new();
    let mut last_done: f64 = 0.0;
    let first_sent = v4_sent
        .iter()
        .map(|(_, sent)| sent.at_ms)
        .fold(f64::MAX, f64::min);
    for (client, sent) in &v4_sent {
        let done = bench
            .processed_at(*client, sent.id.as_deref().unwrap_or_default())
            .await?;
        to_processed.push(done - sent.at_ms);
        last_done = last_done.max(done);
    }
    let v4_cpu = cpu_time(service)? - cpu;
    let drained = (last_done - first_sent) / 1e3;

    let n = cli.receipts as f64;
    let sync_rate = n / sync_wall.as_secs_f64();
    let mut rates = Table::new(&[
        "route (C=32)",
        "receipts/s answered",
        "÷ synchronous",
        "all processed after s",
        "service CPU s",
    ]);
    rates.row([
        "v3 POST (synchronous: 201 once stored)".to_owned(),
        format!("{sync_rate:.1}"),
        "1.00".to_owned(),
        format!("{:.2}", sync_wall.as_secs_f64()),
        format!("{:.2}", sync_cpu.as_secs_f64()),
    ]);
    let v4_rate = n / v4_wall.as_secs_f64();
    rates.row([
        "v4 POST (asynchronous: 202 once queued)".to_owned(),
        format!("{v4_rate:.1}"),
        format!("{:.2}", v4_rate / sync_rate),
        format!("{drained:.2}"),
        format!(
            "{:.2} ({:.2} accepting)",
            v4_cpu.as_secs_f64(),
            accepted_cpu.as_secs_f64()
        ),
    ]);
    println!("{}", rates.render());

    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let mut sync_answer: Vec<f64> = sync_sent.iter().map(|(_, s)| ms(&s.answered)).collect();
    let mut v4_answer: Vec<f64> = v4_sent.iter().map(|(_, s)| ms(&s.answered)).collect();
    let mut latency = Table::new(&["latency under that load", "p50 ms", "p99 ms"]);
    latency.row([
        "v3 POST to 201 (stored)".to_owned(),
        format!("{:.0}", percentile(&mut sync_answer, 0.5)),
        format!("{:.0}", percentile(&mut sync_answer, 0.99)),
    ]);
    latency.row([
        "v4 POST to 202 (queued)".to_owned(),
        format!("{:.0}", percentile(&mut v4_answer, 0.5)),
        format!("{:.0}", percentile(&mut v4_answer, 0.99)),
    ]);
    latency.row([
        "v4 POST to PROCESSED".to_owned(),
        format!("{:.0}", percentile(&mut to_processed, 0.5)),
        format!("{:.0}", percentile(&mut to_processed, 0.99)),
    ]);
    println!("{}", latency.render());
    Ok(())
}
