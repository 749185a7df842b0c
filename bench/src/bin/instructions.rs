//! Instruction counts of the conversion, from `valgrind --tool=callgrind`: the same on a busy
//! machine as on an idle one, so a before/after holds whatever the load. Each conversion runs
//! in a process of its own under callgrind; a process that only reads the file is counted too
//! and taken off, so what is left is the conversion.
//!
//! With `--service`, the service's work per upload: the stack is started with the service under
//! callgrind, a few uploads warm it up, then the counts are zeroed (`callgrind_control -z`),
//! uploads are sent one at a time over gRPC and the counts dumped (`callgrind_control -d`); an
//! idle stretch as long is counted the same way and taken off (timers, the relay's polling).
//!
//! Usage: `instructions [CORPUS_DIR] [--service [--bin-dir DIR]]` (default
//! `target/bench-corpus`; `--bin-dir`: where the service and the stack's other binaries are, to
//! count another build; needs `valgrind`). Internally, `instructions --one VARIANT FILE` is the process callgrind counts.

use anyhow::Context;
use imaging_bench::conversion::stages::{Variant, convert};
use imaging_bench::table::Table;
use imaging_pipeline::{Limits, MediaType};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The photos counted (the corpus's 12 MP camera JPEGs).
const FILES: [&str; 2] = ["photo-upright.jpg", "photo-exif6.jpg"];

/// The variants counted, and `None`: the file read alone.
const VARIANTS: [(&str, Option<Variant>); 3] = [
    ("read only", None),
    ("rgb", Some(Variant::ScaledRgb)),
    ("yuv", Some(Variant::Current)),
];

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        let [_, variant, file] = args.as_slice() else {
            anyhow::bail!("usage: instructions --one VARIANT FILE");
        };
        return one(variant, Path::new(file));
    }
    let service = args.iter().any(|a| a == "--service");
    args.retain(|a| a != "--service");
    let bin_dir = match args.iter().position(|a| a == "--bin-dir") {
        Some(at) => {
            let dir = args
                .get(at + 1)
                .map(PathBuf::from)
                .context("--bin-dir needs a directory")?;
            args.drain(at..at + 2);
            dir
        }
        None => imaging_bench::stack::StackOptions::default_bin_dir()?,
    };
    if service {
        return tokio::runtime::Runtime::new()?.block_on(service_counts(bin_dir));
    }
    let corpus = PathBuf::from(args.first().map_or("target/bench-corpus", String::as_str));
    let me = std::env::current_exe()?;
    let mut table = Table::new(&[
        "input",
        "conversion",
        "instructions (millions)",
        "÷ through RGB",
    ]);
    for file in FILES {
        let path = corpus.join(file);
        anyhow::ensure!(
            path.exists(),
            "{} is missing: run the corpus binary first",
            path.display()
        );
        let mut counts = Vec::new();
        for (name, _) in VARIANTS {
            counts.push(count(&me, name, &path)?);
        }
        let base = counts[0];
        let rgb = counts[1].saturating_sub(base);
        for ((name, variant), total) in VARIANTS.iter().zip(&counts).skip(1) {
            let net = total.saturating_sub(base);
            table.row([
                file.to_owned(),
                variant.map_or(*name, Variant::label).to_owned(),
                format!("{:.1}", net as f64 / 1e6),
                format!("{:.3}", net as f64 / rgb.max(1) as f64),
            ]);
        }
    }
    println!(
        "### Instructions per conversion (callgrind; the file read alone taken off)\n\n{}",
        table.render()
    );
    Ok(())
}

/// Converts `file` once with `variant` ("read only": reads it and stops).
fn one(variant: &str, file: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let Some((_, Some(variant))) = VARIANTS.iter().find(|(name, _)| *name == variant) else {
        std::hint::black_box(&bytes);
        return Ok(());
    };
    let (out, _) = convert(&bytes, MediaType::Jpeg, &Limits::default(), *variant)?;
    std::hint::black_box(out);
    Ok(())
}

/// Instructions callgrind counts for `instructions --one VARIANT FILE`.
fn count(me: &Path, variant: &str, file: &Path) -> anyhow::Result<u64> {
    let out = tempfile::NamedTempFile::new()?;
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.path().display()))
        .arg("-q")
        .arg(me)
        .args(["--one", variant])
        .arg(file)
        .status()
        .context("running valgrind (apt install valgrind)")?;
    anyhow::ensure!(status.success(), "callgrind run of {variant} failed");
    let text = std::fs::read_to_string(out.path())?;
    total_of(&text).context("no instruction total in callgrind's output")
}

/// Uploads counted per file.
const SERVICE_UPLOADS: usize = 20;

/// The service's instructions per upload, for a 20 KB receipt and a 9 MB scanned PDF.
async fn service_counts(bin_dir: PathBuf) -> anyhow::Result<()> {
    use imaging_bench::stack::{Stack, StackOptions};
    use imaging_bench::uploads::{corpus, load};
    use imaging_proto::v1;

    let dir = tempfile::tempdir()?;
    let out = dir.path().join("callgrind.out");
    let stack = Stack::start(StackOptions {
        bin_dir,
        s3_payload: "checksum".to_owned(),
        service_env: Vec::new(),
        service_wrapper: vec![
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            "-q".to_owned(),
            format!("--callgrind-out-file={}", out.display()),
        ],
        secret: "bench-only-secret".to_owned(),
        quota_bytes: 1 << 40,
    })
    .await?;
    let (user, workspace) = ("bench-user", "bench-ws");
    let token = stack.token(user, workspace, "owner,company_admin", "financial")?;
    let mut registry = stack.registry().await?;
    registry.workspace(workspace, 1 << 40).await?;
    let client = v1::image_ingest_client::ImageIngestClient::connect(stack.grpc_url()).await?;
    let pid = stack.service_pid();

    let receipt = bytes::Bytes::from(corpus::receipt_jpeg()?);
    let pdf = bytes::Bytes::from(corpus::scanned_pdf(9_000_000)?);
    let mut table = Table::new(&[
        "upload (gRPC, one at a time)",
        "uploads",
        "instructions per upload (millions)",
        "idle taken off (millions)",
    ]);
    let mut next_entry = 0;
    for (name, bytes, content_type, entries) in [
        (
            "20 KB receipt JPEG, new receipt",
            &receipt,
            "image/jpeg",
            false,
        ),
        (
            "9 MB scanned PDF, pass-through",
            &pdf,
            "application/pdf",
            true,
        ),
    ] {
        let mut targets = Vec::new();
        for _ in 0..SERVICE_UPLOADS + 2 {
            targets.push(if entries {
                let id = format!("entry-{next_entry}");
                next_entry += 1;
                registry
                    .target(v1::TargetKind::ExpenseEntry, &id, workspace, user)
                    .await?;
                v1::Target {
                    kind: v1::TargetKind::ExpenseEntry as i32,
                    id,
                    workspace_id: String::new(),
                }
            } else {
                v1::Target {
                    kind: v1::TargetKind::Receipt as i32,
                    ..Default::default()
                }
            });
        }
        let send = |target: v1::Target| {
            let messages =
                load::upload_messages(target, bytes, content_type, "file", bytes.len() as u64);
            load::grpc_upload(&client, &token, messages)
        };
        // Warm-up: connections, lazy set-up, first allocations. A build that refuses the file
        // gets a row that says so.
        let mut refused = None;
        for target in targets.drain(..2) {
            if let Err(status) = send(target).await? {
                refused = Some(status.message().to_owned());
            }
        }
        if let Some(message) = refused {
            table.row([
                name.to_owned(),
                "0".to_owned(),
                format!("refused: {message}"),
                String::new(),
            ]);
            continue;
        }
        callgrind_control(pid, "-z")?;
        let started = std::time::Instant::now();
        for target in targets {
            send(target).await??;
        }
        let busy = started.elapsed();
        let counted = dumped(pid, &out)?;
        callgrind_control(pid, "-z")?;
        tokio::time::sleep(busy).await;
        let idle = dumped(pid, &out)?;
        table.row([
            name.to_owned(),
            SERVICE_UPLOADS.to_string(),
            format!(
                "{:.2}",
                counted.saturating_sub(idle) as f64 / SERVICE_UPLOADS as f64 / 1e6
            ),
            format!("{:.2}", idle as f64 / 1e6),
        ]);
    }
    drop(stack);
    println!(
        "### Service instructions per upload (callgrind, counts zeroed after a warm-up)\n\n{}",
        table.render()
    );
    Ok(())
}

fn callgrind_control(pid: u32, what: &str) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .arg(what)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running callgrind_control")?;
    anyhow::ensure!(status.success(), "callgrind_control {what} failed");
    Ok(())
}

/// Dumps the counts since they were last zeroed and reads their total from the newest dump.
fn dumped(pid: u32, out: &Path) -> anyhow::Result<u64> {
    let dir = out.parent().context("dump directory")?;
    let before: Vec<PathBuf> = dumps(dir)?;
    callgrind_control(pid, "-d")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let new: Vec<PathBuf> = dumps(dir)?
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if let Some(path) = new.first() {
            // Written whole before callgrind_control returns; read until the total is there.
            let text = std::fs::read_to_string(path)?;
            if let Some(total) = total_of(&text) {
                return Ok(total);
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no callgrind dump appeared in {}",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn dumps(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("callgrind.out"))
        .collect())
}

fn total_of(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
}
