//! The command-line baselines: `vips thumbnail` (libvips 8.x) and `cwebp` (libwebp), run as
//! processes and timed wall-clock from spawn to exit.

use anyhow::Context;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A baseline tool invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `vips thumbnail IN OUT.webp[Q=..,strip] EDGE --size down` (all cores).
    Vips,
    /// The same with `VIPS_CONCURRENCY=1` (one worker thread, like our conversion).
    VipsOneThread,
    /// `cwebp -q Q -resize W H -metadata none IN -o OUT` (ignores EXIF orientation).
    Cwebp,
}

impl Tool {
    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Vips => "vips thumbnail",
            Tool::VipsOneThread => "vips thumbnail, VIPS_CONCURRENCY=1",
            Tool::Cwebp => "cwebp -resize",
        }
    }

    /// The program run.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Vips | Tool::VipsOneThread => "vips",
            Tool::Cwebp => "cwebp",
        }
    }

    /// The command converting `input` to `output`, long edge `max_edge` (vips) or exactly
    /// `size` (cwebp, which takes a target size and does not keep the aspect on its own).
    pub fn command(
        self,
        input: &Path,
        output: &Path,
        max_edge: u32,
        size: (u32, u32),
        quality: f32,
    ) -> Command {
        let mut command = Command::new(self.program());
        match self {
            Tool::Vips | Tool::VipsOneThread => {
                // libvips 8.14: `vips thumbnail filename out width [--height H] [--size down]`;
                // the height defaults to the width, so the image fits a max_edge square box.
                command
                    .arg("thumbnail")
                    .arg(input)
                    .arg(format!("{}[Q={quality},strip]", output.display()))
                    .arg(max_edge.to_string())
                    .args(["--size", "down"]);
                if self == Tool::VipsOneThread {
                    command.env("VIPS_CONCURRENCY", "1");
                }
            }
            Tool::Cwebp => {
                command
                    .args(["-quiet", "-q", &quality.to_string(), "-resize"])
                    .args([size.0.to_string(), size.1.to_string()])
                    .args(["-metadata", "none"])
                    .arg(input)
                    .arg("-o")
                    .arg(output);
            }
        }
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        command
    }
}

/// The version line of each tool, failing with an install hint if one is missing.
pub fn require_tools() -> anyhow::Result<Vec<String>> {
    let probe = |program: &str, flag: &str, package: &str| -> anyhow::Result<String> {
        let output = Command::new(program).arg(flag).output().with_context(|| {
            format!(
                "`{program}` is not installed or not on PATH: install the Debian package \
                 `{package}` (scripts/bench.sh does this) and run again"
            )
        })?;
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(format!(
            "{program} {}",
            text.lines().next().unwrap_or("").trim()
        ))
    };
    Ok(vec![
        probe("vips", "--version", "libvips-tools")?,
        probe("cwebp", "-version", "webp")?,
    ])
}

/// Runs `command` once, timing it; fails with its stderr if it exits unsuccessfully.
pub fn run_timed(command: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(elapsed)
}

/// libvips in process through pyvips (`bench/scripts/vips_inprocess.py`), so that no process
/// start-up is timed: what one repetition of `thumbnail_buffer` + `webpsave_buffer` takes.
#[derive(Debug, Clone)]
pub struct InProcess {
    /// Median time of one conversion.
    pub time: Duration,
    /// libvips worker threads (`VIPS_CONCURRENCY`).
    pub threads: usize,
}

/// The Python interpreter with pyvips: `IMAGING_BENCH_PYTHON` (scripts/bench.sh makes a venv
/// and sets it), else `python3`.
fn python() -> String {
    std::env::var("IMAGING_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Converts `input` to `output` with libvips in process at libwebp effort `effort`, `reps`
/// timed repetitions on `threads` worker threads.
pub fn vips_in_process(
    input: &Path,
    output: &Path,
    (max_edge, quality, effort): (u32, f32, i32),
    reps: usize,
    threads: usize,
) -> anyhow::Result<InProcess> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/vips_inprocess.py");
    let result = Command::new(python())
        .arg(&script)
        .arg(input)
        .arg(output)
        .args([
            max_edge.to_string(),
            (quality.round() as i32).to_string(),
            effort.to_string(),
            reps.to_string(),
        ])
        .env("VIPS_CONCURRENCY", threads.to_string())
        .output()
        .with_context(|| format!("running {} {}", python(), script.display()))?;
    anyhow::ensure!(
        result.status.success(),
        "pyvips failed (install it with scripts/bench.sh, or set IMAGING_BENCH_PYTHON to a \
         Python with pyvips): {}",
        String::from_utf8_lossy(&result.stderr).trim()
    );
    let text = String::from_utf8_lossy(&result.stdout);
    let median_ms = text
        .split("\"median_ms\": ")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|value| value.trim().parse::<f64>().ok())
        .with_context(|| format!("pyvips printed no median: {text}"))?;
    Ok(InProcess {
        time: Duration::from_secs_f64(median_ms / 1e3),
        threads,
    })
}
