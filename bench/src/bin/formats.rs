//! Camera and scanner formats: our conversions against the tools people use for the same job,
//! run in the same run on the same files, alternated.
//!
//! - a 12 MP HEIC (made by libheif's `heif-enc` from the corpus photo) to a JPEG at quality 90,
//!   against `heif-convert -q 90` (libheif and libjpeg, a process) and libvips in process
//!   (`heifload` + `jpegsave`, one thread);
//! - the same HEIC to a 2048 px WebP at q80, against libvips in process (`thumbnail` +
//!   `webpsave`, one thread);
//! - a 10-page CCITT G4 TIFF (A4 at 300 dpi, made with libvips and `tiffcp`) to a PDF, against
//!   `tiff2pdf` (libtiff, a process).
//!
//! For each: the median wall time of `--reps` runs, the CPU time (user + system) of one run, and
//! the peak memory of one run (our step in a child process of its own, so the figure is the
//! step's; the tools' own maximum RSS).
//!
//! Usage: `formats [CORPUS_DIR] [--reps N]` (default `target/bench-corpus`, 7 repetitions).
//! Needs `heif-enc`, `heif-convert` (libheif-examples), `tiffcp`, `tiff2pdf` (libtiff-tools),
//! `vips` and the pyvips venv that `scripts/bench.sh` makes.

use anyhow::{Context, bail};
use imaging_bench::memory;
use imaging_bench::table::Table;
use imaging_pipeline::{Limits, MediaType};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Set in a child process: run one of our steps once and print its peak RSS growth.
const CHILD: &str = "IMAGING_FORMATS_CHILD";

/// One measured way of doing a row's job.
struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_mib: f64,
    bytes: usize,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// What our steps do to a file.
#[derive(Clone, Copy)]
enum Ours {
    HeicToJpeg,
    HeicToWebp,
    TiffToPdf,
}

impl Ours {
    fn name(self) -> &'static str {
        match self {
            Ours::HeicToJpeg => "heic-jpeg",
            Ours::HeicToWebp => "heic-webp",
            Ours::TiffToPdf => "tiff-pdf",
        }
    }

    fn from_name(name: &str) -> Option<Ours> {
        [Ours::HeicToJpeg, Ours::HeicToWebp, Ours::TiffToPdf]
            .into_iter()
            .find(|ours| ours.name() == name)
    }

    /// Runs the step once; the output's size.
    fn run(self, bytes: &[u8]) -> anyhow::Result<usize> {
        let limits = Limits::default();
        Ok(match self {
            Ours::HeicToJpeg => imaging_pipeline::inspect(bytes, MediaType::Heic, &limits)?
                .converted
                .context("no JPEG")?
                .len(),
            Ours::HeicToWebp => imaging_pipeline::to_webp(bytes, MediaType::Heic, &limits)?
                .bytes
                .len(),
            Ours::TiffToPdf => imaging_pipeline::inspect(bytes, MediaType::Tiff, &limits)?
                .converted
                .context("no PDF")?
                .len(),
        })
    }
}

/// Our step: median wall time in this process, then CPU time and peak RSS growth of one run in
/// a child process.
fn ours(step: Ours, input: &Path, reps: usize) -> anyhow::Result<Measured> {
    let bytes = std::fs::read(input)?;
    step.run(&bytes)?;
    let mut times = Vec::with_capacity(reps);
    let mut size = 0;
    for _ in 0..reps {
        let start = Instant::now();
        size = step.run(&bytes)?;
        times.push(start.elapsed());
    }
    let output = Command::new(std::env::current_exe()?)
        .env(CHILD, format!("{}:{}", step.name(), input.display()))
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "child: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let cpu_ms: u64 = fields.next().context("child cpu")?.parse()?;
    let peak_kib: u64 = fields.next().context("child peak")?.parse()?;
    Ok(Measured {
        wall: median(times),
        cpu: Duration::from_millis(cpu_ms),
        peak_mib: peak_kib as f64 / 1024.0,
        bytes: size,
    })
}

/// The child's side: one run, then `CPU_MS PEAK_GROWTH_KIB`.
fn child(spec: &str) -> anyhow::Result<()> {
    let (name, path) = spec.split_once(':').context("child spec")?;
    let step = Ours::from_name(name).context("child step")?;
    let bytes = std::fs::read(path)?;
    let pid = std::process::id();
    memory::reset_peak(pid)?;
    let before = memory::rss(pid)?.current_kib;
    let cpu_before = memory::cpu_time(pid)?;
    step.run(&bytes)?;
    let cpu = memory::cpu_time(pid)? - cpu_before;
    let peak = memory::rss(pid)?.peak_kib;
    println!("{} {}", cpu.as_millis(), peak.saturating_sub(before));
    Ok(())
}

/// A tool run as a process `reps` times: median wall time, and CPU time and maximum RSS of the
/// last run (from `wait4`'s resource usage).
fn process(
    mut make: impl FnMut() -> Command,
    output: &Path,
    reps: usize,
) -> anyhow::Result<Measured> {
    let mut times = Vec::with_capacity(reps);
    let mut last = (Duration::ZERO, 0);
    for i in 0..=reps {
        let start = Instant::now();
        let (status, cpu, max_rss_kib) = run_with_usage(make())?;
        let wall = start.elapsed();
        anyhow::ensure!(status == 0, "a baseline tool failed");
        if i > 0 {
            times.push(wall);
        }
        last = (cpu, max_rss_kib);
    }
    Ok(Measured {
        wall: median(times),
        cpu: last.0,
        peak_mib: last.1 as f64 / 1024.0,
        bytes: std::fs::metadata(output)?.len() as usize,
    })
}

/// Runs `command` to its end: exit status, CPU time and maximum RSS (KiB).
#[allow(unsafe_code)]
fn run_with_usage(mut command: Command) -> anyhow::Result<(i32, Duration, i64)> {
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain C data; wait4 fills it for the child just spawned (which
    // `Child` does not reap itself once waited for here).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        bail!("wait4 failed");
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((
        code,
        time(usage.ru_utime) + time(usage.ru_stime),
        usage.ru_maxrss,
    ))
}

/// libvips in process through pyvips (`IMAGING_BENCH_PYTHON`), one worker thread: the median of
/// `reps` after a warm-up, as `bench/scripts/formats_vips.py` prints it.
fn vips_in_process(
    job: &str,
    input: &Path,
    output: &Path,
    reps: usize,
) -> anyhow::Result<Measured> {
    let python = std::env::var("IMAGING_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/formats_vips.py");
    let out = Command::new(python)
        .env("VIPS_CONCURRENCY", "1")
        .arg(script)
        .arg(job)
        .arg(input)
        .arg(output)
        .arg(reps.to_string())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "pyvips: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let median_ms: f64 = fields.next().context("pyvips median")?.parse()?;
    let cpu_ms: f64 = fields.next().context("pyvips cpu")?.parse()?;
    let peak_kib: f64 = fields.next().context("pyvips peak")?.parse()?;
    Ok(Measured {
        wall: Duration::from_secs_f64(median_ms / 1e3),
        cpu: Duration::from_secs_f64(cpu_ms / 1e3),
        peak_mib: peak_kib / 1024.0,
        bytes: std::fs::metadata(output)?.len() as usize,
    })
}

fn tool(program: &str) -> anyhow::Result<()> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()?
        .status
        .success();
    anyhow::ensure!(found, "{program} is missing (scripts/bench.sh installs it)");
    Ok(())
}

/// Makes the 12 MP HEIC and the 10-page G4 TIFF in `dir` if they are not there.
fn inputs(corpus: &Path, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let heic = dir.join("photo-12mp.heic");
    if !heic.exists() {
        let status = Command::new("heif-enc")
            .args(["-q", "50", "-o"])
            .arg(&heic)
            .arg(corpus.join("photo-upright.jpg"))
            .status()?;
        anyhow::ensure!(status.success(), "heif-enc failed");
    }
    let tiff = dir.join("scan-10p-g4.tif");
    if !tiff.exists() {
        // A 2480x3508 page (A4 at 300 dpi) of text-like strokes, bilevel, Group 4.
        let page = dir.join("page.png");
        let image = imaging_fixtures::scenes::screenshot(2480, 3508, 11);
        let grey = image::DynamicImage::ImageRgb8(image).into_luma8();
        grey.save(&page)?;
        let single = dir.join("page.tif");
        let status = Command::new("vips")
            .arg("tiffsave")
            .arg(&page)
            .arg(&single)
            .args([
                "--compression",
                "ccittfax4",
                "--bitdepth",
                "1",
                "--xres",
                "11.811",
                "--yres",
                "11.811",
            ])
            .status()?;
        anyhow::ensure!(status.success(), "vips tiffsave failed");
        let mut tiffcp = Command::new("tiffcp");
        tiffcp.args(["-c", "g4"]);
        for _ in 0..10 {
            tiffcp.arg(&single);
        }
        anyhow::ensure!(tiffcp.arg(&tiff).status()?.success(), "tiffcp failed");
    }
    Ok((heic, tiff))
}

fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    let mut corpus = PathBuf::from("target/bench-corpus");
    let mut reps = 7;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--reps" {
            reps = args.next().context("--reps needs a number")?.parse()?;
        } else {
            corpus = PathBuf::from(arg);
        }
    }
    for program in ["heif-enc", "heif-convert", "tiffcp", "tiff2pdf", "vips"] {
        tool(program)?;
    }
    let work = corpus.join("formats");
    let (heic, tiff) = inputs(&corpus, &work)?;
    let out = tempfile::tempdir()?;

    let mut table = Table::new(&[
        "job",
        "by",
        "median ms",
        "÷ ours",
        "CPU ms (1 run)",
        "peak MiB (1 run)",
        "output bytes",
    ]);
    let mut row = |job: &str, by: &str, m: &Measured, ours: &Measured| {
        table.row(vec![
            job.to_owned(),
            by.to_owned(),
            format!("{:.1}", m.wall.as_secs_f64() * 1e3),
            format!("{:.2}", m.wall.as_secs_f64() / ours.wall.as_secs_f64()),
            format!("{:.0}", m.cpu.as_secs_f64() * 1e3),
            format!("{:.1}", m.peak_mib),
            m.bytes.to_string(),
        ]);
    };

    let jpeg_out = out.path().join("out.jpg");
    let ours_jpeg = ours(Ours::HeicToJpeg, &heic, reps)?;
    let heif_convert = process(
        || {
            let mut command = Command::new("heif-convert");
            command.args(["-q", "90"]).arg(&heic).arg(&jpeg_out);
            command
        },
        &jpeg_out,
        reps,
    )?;
    let vips_jpeg = vips_in_process("jpeg", &heic, &out.path().join("vips.jpg"), reps)?;
    row("HEIC 12 MP -> JPEG q90", "ours", &ours_jpeg, &ours_jpeg);
    row(
        "HEIC 12 MP -> JPEG q90",
        "heif-convert (process)",
        &heif_convert,
        &ours_jpeg,
    );
    row(
        "HEIC 12 MP -> JPEG q90",
        "libvips in process, 1 thread",
        &vips_jpeg,
        &ours_jpeg,
    );

    let ours_webp = ours(Ours::HeicToWebp, &heic, reps)?;
    let vips_webp = vips_in_process("webp", &heic, &out.path().join("vips.webp"), reps)?;
    row(
        "HEIC 12 MP -> WebP 2048 q80",
        "ours",
        &ours_webp,
        &ours_webp,
    );
    row(
        "HEIC 12 MP -> WebP 2048 q80",
        "libvips in process, 1 thread",
        &vips_webp,
        &ours_webp,
    );

    let pdf_out = out.path().join("out.pdf");
    let ours_pdf = ours(Ours::TiffToPdf, &tiff, reps)?;
    let tiff2pdf = process(
        || {
            let mut command = Command::new("tiff2pdf");
            command.arg("-o").arg(&pdf_out).arg(&tiff);
            command
        },
        &pdf_out,
        reps,
    )?;
    row("10-page G4 TIFF -> PDF", "ours", &ours_pdf, &ours_pdf);
    row(
        "10-page G4 TIFF -> PDF",
        "tiff2pdf (process)",
        &tiff2pdf,
        &ours_pdf,
    );

    println!(
        "HEIC {} bytes, TIFF {} bytes; medians of {reps} runs after a warm-up; \"÷ ours\" is the \
         row's median over ours",
        std::fs::metadata(&heic)?.len(),
        std::fs::metadata(&tiff)?.len()
    );
    println!("{}", table.render());
    Ok(())
}
