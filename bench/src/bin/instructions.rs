//! Instruction counts of the conversion, from `valgrind --tool=callgrind`: the same on a busy
//! machine as on an idle one, so a before/after holds whatever the load. Each conversion runs
//! in a process of its own under callgrind; a process that only reads the file is counted too
//! and taken off, so what is left is the conversion.
//!
//! Usage: `instructions [CORPUS_DIR]` (default `target/bench-corpus`; needs `valgrind`).
//! Internally, `instructions --one VARIANT FILE` is the process callgrind counts.

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        let [_, variant, file] = args.as_slice() else {
            anyhow::bail!("usage: instructions --one VARIANT FILE");
        };
        return one(variant, Path::new(file));
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
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .context("no instruction total in callgrind's output")
}
