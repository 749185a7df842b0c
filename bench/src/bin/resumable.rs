//! `resumable`: what a resumable upload costs and saves, through the real stack (release
//! `ingest-service` on S3 + Redis, release `gateway`, each a process).
//!
//! One 10 MB file (a PNG of noise, stored as is). First table: the upload lost at half-way and
//! resumed once with tus (the bytes already committed are not sent again) against the same loss
//! followed by a plain re-upload from zero, and against the upload sent once without a loss:
//! time and bytes sent. Second table: tus PATCH throughput (one PATCH, and 1 MiB PATCHes) against
//! a one-shot POST of the same file through the same gateway, with the service's CPU time per
//! upload. Routes are alternated round by round; medians of the rounds.
//!
//! Build first: `cargo build --release --bin ingest-service --bin gateway` and
//! `cargo build --release -p imaging-bench --bins`; then `target/release/resumable`.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use imaging_bench::memory::cpu_time;
use imaging_bench::stack::{Stack, StackOptions};
use imaging_bench::table::Table;
use std::time::{Duration, Instant};

const WORKSPACE: &str = "bench";
const USER: &str = "bench-user";

#[derive(Debug, Parser)]
#[command(about = "Resumable uploads: resumed once vs sent once, tus PATCH vs one-shot POST")]
struct Cli {
    /// Rounds (each route once per round).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// A short run to check that everything works.
    #[arg(long)]
    quick: bool,
}

/// One measured upload: wall time, bytes the client sent, service CPU time.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    seconds: f64,
    sent: u64,
    cpu: f64,
}

struct Bench {
    http: reqwest::Client,
    base: String,
    token: String,
    file: Bytes,
    service_pid: u32,
}

impl Bench {
    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Tus-Resumable", "1.0.0")
    }

    /// One-shot POST of the whole file (Receipt Image v3).
    async fn post(&self) -> anyhow::Result<u64> {
        let response = self
            .auth(
                self.http
                    .post(format!("{}/api/v3.0/expense/receiptimages", self.base)),
            )
            .header("Content-Type", "image/png")
            .body(self.file.clone())
            .send()
            .await?;
        if response.status() != 201 {
            bail!("POST answered {}", response.status());
        }
        Ok(self.file.len() as u64)
    }

    /// Creates a tus upload; its URL.
    async fn create(&self) -> anyhow::Result<String> {
        let response = self
            .auth(self.http.post(format!("{}/api/uploads/", self.base)))
            .header("Upload-Length", self.file.len().to_string())
            .header("Upload-Metadata", "filetype aW1hZ2UvcG5n")
            .send()
            .await?;
        if response.status() != 201 {
            bail!("tus POST answered {}", response.status());
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .context("no Location")?;
        Ok(format!("{}{location}", self.base))
    }

    /// PATCHes `self.file[from..to]` at `from`; true once the upload is complete.
    async fn patch(&self, url: &str, from: usize, to: usize) -> anyhow::Result<bool> {
        let response = self
            .auth(self.http.patch(url))
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", from.to_string())
            .body(self.file.slice(from..to))
            .send()
            .await?;
        if response.status() != 204 {
            bail!("PATCH answered {}", response.status());
        }
        Ok(response.headers().contains_key("image-id"))
    }

    /// A tus upload in PATCHes of `chunk` bytes.
    async fn tus(&self, chunk: usize) -> anyhow::Result<u64> {
        let url = self.create().await?;
        let mut from = 0;
        while from < self.file.len() {
            let to = (from + chunk).min(self.file.len());
            let done = self.patch(&url, from, to).await?;
            if to == self.file.len() && !done {
                bail!("the last PATCH did not complete the upload");
            }
            from = to;
        }
        Ok(self.file.len() as u64)
    }

    /// Sends `self.file[..cut]` as the body of `request` and then fails the body, as a lost
    /// connection does; what the client sent.
    async fn lost(&self, request: reqwest::RequestBuilder, cut: usize) -> u64 {
        let pieces: Vec<Result<Bytes, std::io::Error>> = self
            .file
            .slice(..cut)
            .chunks(64 * 1024)
            .map(|piece| Ok(Bytes::copy_from_slice(piece)))
            .chain([Err(std::io::Error::other("connection lost"))])
            .collect();
        let body = reqwest::Body::wrap_stream(futures::stream::iter(pieces));
        let _ = request
            .header("Content-Length", self.file.len().to_string())
            .body(body)
            .send()
            .await;
        cut as u64
    }

    /// tus: half the file, the connection lost, then HEAD and the rest from the offset.
    async fn tus_resumed(&self) -> anyhow::Result<u64> {
        let url = self.create().await?;
        let cut = self.file.len() / 2;
        let request = self
            .auth(self.http.patch(&url))
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", "0");
        let mut sent = self.lost(request, cut).await;
        let head = self.auth(self.http.head(&url)).send().await?;
        let offset: usize = head
            .headers()
            .get("upload-offset")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .context("no Upload-Offset")?;
        if !self.patch(&url, offset, self.file.len()).await? {
            bail!("the resumed PATCH did not complete the upload");
        }
        sent += (self.file.len() - offset) as u64;
        Ok(sent)
    }

    /// A one-shot POST lost at half-way, then sent again whole.
    async fn post_restarted(&self) -> anyhow::Result<u64> {
        let request = self
            .auth(
                self.http
                    .post(format!("{}/api/v3.0/expense/receiptimages", self.base)),
            )
            .header("Content-Type", "image/png");
        let sent = self.lost(request, self.file.len() / 2).await;
        Ok(sent + self.post().await?)
    }

    async fn measure(&self, case: Case) -> anyhow::Result<Run> {
        let cpu = cpu_time(self.service_pid)?;
        let started = Instant::now();
        let sent = match case {
            Case::Post => self.post().await?,
            Case::TusOne => self.tus(usize::MAX).await?,
            Case::TusMib => self.tus(1 << 20).await?,
            Case::TusResumed => self.tus_resumed().await?,
            Case::PostRestarted => self.post_restarted().await?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let cpu = (cpu_time(self.service_pid)? - cpu).as_secs_f64();
        Ok(Run { seconds, sent, cpu })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Post,
    TusOne,
    TusMib,
    TusResumed,
    PostRestarted,
}

const CASES: [Case; 5] = [
    Case::Post,
    Case::TusOne,
    Case::TusMib,
    Case::TusResumed,
    Case::PostRestarted,
];

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.quick {
        cli.rounds = 2;
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
    let file = Bytes::from(imaging_fixtures::noise_png(1840));
    let bench = Bench {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        base: stack.gateway_url(),
        token: stack.token(USER, WORKSPACE, "owner", "")?,
        file,
        service_pid: stack.service_pid(),
    };
    println!(
        "Resumable uploads: a {}-byte PNG through the gateway (S3 + Redis), {} rounds, medians.\n",
        bench.file.len(),
        cli.rounds
    );
    // One warm-up of every route.
    for case in CASES {
        bench.measure(case).await?;
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); CASES.len()];
    for _ in 0..cli.rounds {
        for (i, case) in CASES.iter().enumerate() {
            runs[i].push(bench.measure(*case).await?);
        }
    }
    let summary: Vec<Run> = runs
        .iter()
        .map(|runs| Run {
            seconds: median(runs.iter().map(|run| run.seconds).collect()),
            sent: runs.first().map_or(0, |run| run.sent),
            cpu: median(runs.iter().map(|run| run.cpu).collect()),
        })
        .collect();
    let of = |case: Case| summary[CASES.iter().position(|c| *c == case).unwrap_or(0)];
    let once = of(Case::TusOne);
    let size = bench.file.len() as f64;

    let mut lost = Table::new(&[
        "upload lost at 50%",
        "ms",
        "÷ sent once",
        "MB sent",
        "÷ file size",
    ]);
    for (name, case) in [
        ("sent once (tus, no loss)", Case::TusOne),
        ("tus: resumed from the offset", Case::TusResumed),
        ("one-shot POST: sent again from zero", Case::PostRestarted),
    ] {
        let run = of(case);
        lost.row([
            name.to_owned(),
            format!("{:.0}", run.seconds * 1e3),
            format!("{:.2}", run.seconds / once.seconds),
            format!("{:.2}", run.sent as f64 / 1e6),
            format!("{:.2}", run.sent as f64 / size),
        ]);
    }
    println!("{}", lost.render());

    let post = of(Case::Post);
    let mut throughput = Table::new(&["route", "ms", "MB/s", "÷ one-shot POST", "service CPU ms"]);
    for (name, case) in [
        ("one-shot POST (v3)", Case::Post),
        ("tus: POST + one PATCH", Case::TusOne),
        ("tus: POST + 1 MiB PATCHes", Case::TusMib),
    ] {
        let run = of(case);
        throughput.row([
            name.to_owned(),
            format!("{:.0}", run.seconds * 1e3),
            format!("{:.1}", size / 1e6 / run.seconds),
            format!("{:.2}", run.seconds / post.seconds),
            format!("{:.0}", run.cpu * 1e3),
        ]);
    }
    println!("{}", throughput.render());
    Ok(())
}
