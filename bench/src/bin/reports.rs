//! `reports`: what an append to a growing report costs.
//!
//! Appends the same ~1 MB JPEG to one report again and again through the release
//! `ingest-service` (gRPC), on the filesystem and on S3 (the bench's `s3-server`, a separate
//! process), and reports for the 2nd, 50th and 200th append: the time of the call, the
//! service's peak memory growth during it (measured appends run on a freshly started service,
//! so that memory the allocator kept from earlier ones does not hide or inflate theirs), the bytes the service wrote (from `/proc/<pid>/io`:
//! to sockets and files), and on S3 the CPU time the S3 server spent (its own copy of the
//! report).
//!
//! Build first: `cargo build --release --bin ingest-service` and
//! `cargo build --release -p imaging-bench --bins`; then `target/release/reports`.

use anyhow::Context;
use clap::Parser;
use imaging_bench::memory::{reset_peak, rss};
use imaging_bench::service::{Service, WORKSPACE};
use imaging_bench::stack::{ChildGuard, StackOptions, authorized, read_endpoint};
use imaging_bench::table::Table;
use imaging_e2e::{S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY};
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::target_registry_client::TargetRegistryClient;
use imaging_proto::v1::upload_image_request::Part;
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Cost of appends to a growing report, on the filesystem and on S3")]
struct Cli {
    /// Appends per backend (rows are printed for the 2nd, the 50th and the last).
    #[arg(long, default_value_t = 200)]
    appends: usize,
    /// A much shorter run (30 appends) to check that everything works.
    #[arg(long)]
    quick: bool,
}

/// A JPEG of about 1 MB that does not compress further: noise, quality 90.
fn noisy_jpeg() -> anyhow::Result<Vec<u8>> {
    use image::ImageEncoder;
    let (width, height) = (730u32, 730u32);
    let mut state: u32 = 12345;
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .context("encoding the JPEG")?;
    Ok(out)
}

/// Bytes a process has written: files and sockets (`wchar` of `/proc/<pid>/io`; what it sends
/// to S3, or writes to disk).
fn written(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("wchar:"))
        .and_then(|value| value.trim().parse().ok())
        .context("no wchar in /proc/<pid>/io")
}

/// CPU time (user + system) a process has used, in ms.
fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|t| t.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|t| t.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Ok(ticks as f64 * 10.0)
}

/// One append's figures.
struct Append {
    report_mb: f64,
    ms: f64,
    peak_growth_mib: f64,
    written_mb: f64,
    s3_cpu_ms: Option<f64>,
}

/// How a measured append's service is started: the same settings and data every time.
struct Launcher<'a> {
    options: &'a StackOptions,
    dir: &'a std::path::Path,
    env: &'a [(&'a str, &'a str)],
}

impl Launcher<'_> {
    async fn start(&self) -> anyhow::Result<Service> {
        let service = Service::start(self.options, self.dir, self.env).await?;
        service.register().await?;
        Ok(service)
    }
}

/// One append of `jpeg` to the report; its figures.
async fn append(service: &Service, s3_pid: Option<u32>, jpeg: &[u8]) -> anyhow::Result<Append> {
    upload(service, s3_pid, jpeg, v1::TargetKind::Report, "R1").await
}

/// One upload of `jpeg` to a target; its figures.
async fn upload(
    service: &Service,
    s3_pid: Option<u32>,
    jpeg: &[u8],
    kind: v1::TargetKind,
    id: &str,
) -> anyhow::Result<Append> {
    let token = Service::token("user0", WORKSPACE, &[])?;
    let pid = service.pid();
    let messages = vec![
        v1::UploadImageRequest {
            part: Some(Part::Header(v1::UploadHeader {
                target: Some(v1::Target {
                    kind: kind as i32,
                    id: id.into(),
                    workspace_id: String::new(),
                }),
                content_type: "image/jpeg".into(),
                file_name: "page.jpg".into(),
                declared_size: jpeg.len() as u64,
                ..Default::default()
            })),
        },
        v1::UploadImageRequest {
            part: Some(Part::Chunk(jpeg.to_vec().into())),
        },
    ];
    let before = rss(pid)?;
    reset_peak(pid)?;
    let written0 = written(pid)?;
    let s3_cpu0 = s3_pid.map(cpu_ms).transpose()?;
    let started = Instant::now();
    let done = ImageIngestClient::new(service.channel())
        .upload_image(authorized(&token, tokio_stream::iter(messages))?)
        .await
        .context("append")?
        .into_inner();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let after = rss(pid)?;
    let written1 = written(pid)?;
    Ok(Append {
        report_mb: done.size_bytes as f64 / 1e6,
        ms,
        peak_growth_mib: after.peak_kib.saturating_sub(before.current_kib) as f64 / 1024.0,
        written_mb: (written1 - written0) as f64 / 1e6,
        s3_cpu_ms: match (s3_pid, s3_cpu0) {
            (Some(pid), Some(start)) => Some(cpu_ms(pid)? - start),
            _ => None,
        },
    })
}

/// Appends `appends` times; the appends numbered in `measured` run on a freshly started
/// service (the report and state stay), so that their memory is theirs alone and not what the
/// allocator kept from earlier appends. Returns the measured appends' figures.
async fn run(
    launcher: &Launcher<'_>,
    s3_pid: Option<u32>,
    jpeg: &[u8],
    appends: usize,
    measured: &[usize],
) -> anyhow::Result<Vec<(usize, Append)>> {
    let mut service = launcher.start().await?;
    let registry = Service::token("bench-registry", "*", &["service"])?;
    TargetRegistryClient::new(service.channel())
        .register_target(authorized(
            &registry,
            v1::RegisterTargetRequest {
                target: Some(v1::Target {
                    kind: v1::TargetKind::Report as i32,
                    id: "R1".into(),
                    workspace_id: String::new(),
                }),
                workspace_id: WORKSPACE.into(),
                owner: "user0".into(),
            },
        )?)
        .await
        .context("registering the report")?;
    let mut out = Vec::new();
    for n in 1..=appends {
        if measured.contains(&n) {
            drop(service);
            service = launcher.start().await?;
            out.push((n, append(&service, s3_pid, jpeg).await?));
        } else {
            append(&service, s3_pid, jpeg).await?;
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let appends = if cli.quick { 30 } else { cli.appends.max(50) };
    let options = StackOptions {
        s3_payload: "auto".to_owned(),
        service_env: Vec::new(),
        service_wrapper: Vec::new(),
        bin_dir: StackOptions::default_bin_dir()?,
        secret: imaging_bench::service::SECRET.to_owned(),
        quota_bytes: 1 << 40,
    };
    let jpeg = noisy_jpeg()?;
    println!(
        "Report appends: a {}-byte JPEG appended {appends} times to one report, one after another.\n",
        jpeg.len()
    );
    let mut table = Table::new(&[
        "storage",
        "append #",
        "report MB",
        "ms",
        "service peak growth MiB",
        "÷ upload",
        "service sent MB",
        "S3 server CPU ms",
    ]);
    let limits = [
        ("APP__LIMITS__REPORT__MAX_BYTES", "1000000000"),
        ("APP__LIMITS__QUOTA__DEFAULT_BYTES", "4000000000"),
    ];
    {
        // The same JPEG uploaded as a loose receipt (stored as sent, after the same
        // validation) on a fresh service: what any upload of this file costs.
        let dir = tempfile::tempdir()?;
        let env: Vec<(&str, &str)> = limits.to_vec();
        let launcher = Launcher {
            options: &options,
            dir: dir.path(),
            env: &env,
        };
        let service = launcher.start().await?;
        let receipt = upload(&service, None, &jpeg, v1::TargetKind::Receipt, "").await?;
        table.row([
            "filesystem, a receipt (baseline)".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            format!("{:.1}", receipt.ms),
            format!("{:.1}", receipt.peak_growth_mib),
            format!(
                "{:.2}",
                receipt.peak_growth_mib * 1_048_576.0 / jpeg.len() as f64
            ),
            format!("{:.2}", receipt.written_mb),
            "-".to_owned(),
        ]);
    }
    for storage in ["filesystem", "S3 (s3-server)"] {
        let dir = tempfile::tempdir()?;
        let mut s3 = None;
        let mut env: Vec<(&str, String)> = limits
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        if storage != "filesystem" {
            let mut server = ChildGuard::spawn(
                "s3-server",
                Command::new(options.bin_dir.join("s3-server"))
                    .arg("--exit-with-stdin")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null()),
            )?;
            let endpoint = read_endpoint(&mut server)?;
            env.extend([
                ("APP__STORAGE__BACKEND", "s3".to_owned()),
                ("APP__STORAGE__ENDPOINT", endpoint),
                ("APP__STORAGE__REGION", "us-east-1".to_owned()),
                ("APP__STORAGE__BUCKET", S3_BUCKET.to_owned()),
                ("APP__STORAGE__ACCESS_KEY", S3_ACCESS_KEY.to_owned()),
                ("APP__STORAGE__SECRET_KEY", S3_SECRET_KEY.to_owned()),
            ]);
            s3 = Some(server);
        }
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let launcher = Launcher {
            options: &options,
            dir: dir.path(),
            env: &env,
        };
        let mut rows = vec![2, 50.min(appends), appends];
        rows.dedup();
        let s3_pid = s3.as_ref().map(ChildGuard::pid);
        let figures = run(&launcher, s3_pid, &jpeg, appends, &rows).await?;
        for (n, append) in &figures {
            table.row([
                storage.to_owned(),
                n.to_string(),
                format!("{:.1}", append.report_mb),
                format!("{:.1}", append.ms),
                format!("{:.1}", append.peak_growth_mib),
                format!(
                    "{:.2}",
                    append.peak_growth_mib * 1_048_576.0 / jpeg.len() as f64
                ),
                format!("{:.2}", append.written_mb),
                append
                    .s3_cpu_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0}")),
            ]);
        }
        let second = &figures[0].1;
        let last = &figures[figures.len() - 1].1;
        println!(
            "{storage}: append #{appends} took {:.2}x the time of append #2",
            last.ms / second.ms
        );
    }
    println!("\n{}", table.render());
    Ok(())
}
