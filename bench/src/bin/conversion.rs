//! Conversion benchmark: our in-process WebP conversion (`imaging_pipeline::to_webp`, default
//! limits: long edge 2048, quality 80) against `vips thumbnail` and `cwebp` run as processes,
//! with output size, dimensions, SSIM and PSNR against a common reference; a stage breakdown of
//! our conversion (before and after the optimisation); libwebp encoder settings compared; and
//! the pipeline's other CPU stages (inspect, report append).
//!
//! Usage: `conversion [CORPUS_DIR] [--reps N]` (default `target/bench-corpus`, 7 repetitions).
//! Make the corpus first with the `corpus` binary.

use anyhow::Context;
use imaging_bench::conversion::cli::{Tool, require_tools, run_timed, vips_in_process};
use imaging_bench::conversion::corpus::{CORPUS_FILES, CorpusFile};
use imaging_bench::conversion::quality::{Original, psnr, ssim};
use imaging_bench::conversion::stages::{
    LIBWEBP_DEFAULT_METHOD, StageTimes, Variant, convert, encode_rgb, encoder_input,
};
use imaging_bench::table::Table;
use imaging_pipeline::webp_stages::{lossy_config, target_size};
use imaging_pipeline::{Limits, MediaType, WEBP_METHOD};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Command-line options.
struct Options {
    corpus: PathBuf,
    reps: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut corpus = PathBuf::from("target/bench-corpus");
    let mut reps = 7;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--reps" {
            let value = args.next().context("--reps needs a number")?;
            reps = value
                .to_string_lossy()
                .parse()
                .context("--reps needs a number")?;
        } else {
            corpus = PathBuf::from(arg);
        }
    }
    anyhow::ensure!(reps >= 1, "--reps must be at least 1");
    Ok(Options { corpus, reps })
}

/// The median of some durations.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Runs `work` once to warm up, then `reps` times; the median time and the last result.
fn timed<T>(
    reps: usize,
    mut work: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, T)> {
    let mut last = work()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        last = work()?;
        times.push(start.elapsed());
    }
    Ok((median(times), last))
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e3)
}

fn ratio(ours: Duration, theirs: Duration) -> String {
    if theirs.is_zero() {
        return "-".to_owned();
    }
    format!("{:.2}", ours.as_secs_f64() / theirs.as_secs_f64())
}

fn read(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (make the corpus first: cargo run --release -p imaging-bench --bin corpus)",
            path.display()
        )
    })
}

/// A measured output: timing, the file and its quality against the reference.
struct Measured {
    label: String,
    time: Duration,
    /// Time minus the tool's start-up cost (command-line tools only).
    net: Option<Duration>,
    bytes: usize,
    width: u32,
    height: u32,
    ssim: f64,
    psnr: f64,
    note: &'static str,
}

/// Decodes a WebP output and scores it against the original at the output's size.
fn score(original: &Original, webp: &[u8], upright: bool) -> anyhow::Result<(u32, u32, f64, f64)> {
    let decoded = image::load_from_memory_with_format(webp, image::ImageFormat::WebP)
        .context("decoding a WebP output")?
        .into_rgb8();
    let reference = original.reference(decoded.width(), decoded.height(), upright)?;
    Ok((
        decoded.width(),
        decoded.height(),
        ssim(&reference, &decoded)?,
        psnr(&reference, &decoded)?,
    ))
}

/// Start-up cost of each tool: the median over `reps` runs on a 16x16 input.
fn startup_costs(
    corpus: &Path,
    scratch: &Path,
    reps: usize,
    quality: f32,
) -> anyhow::Result<Vec<(Tool, Duration)>> {
    let input = corpus.join("tiny.jpg");
    read(corpus, "tiny.jpg")?;
    let mut costs = Vec::new();
    for tool in [Tool::Vips, Tool::VipsOneThread, Tool::Cwebp] {
        let output = scratch.join("startup.webp");
        let (time, ()) = timed(reps, || {
            run_timed(&mut tool.command(&input, &output, 2048, (16, 16), quality)).map(|_| ())
        })?;
        costs.push((tool, time));
    }
    Ok(costs)
}

/// Every converter on one corpus file.
fn convert_file(
    corpus: &Path,
    scratch: &Path,
    file: &CorpusFile,
    reps: usize,
    startup: &[(Tool, Duration)],
) -> anyhow::Result<Vec<Measured>> {
    let limits = Limits::default();
    let input = corpus.join(file.name);
    let bytes = read(corpus, file.name)?;
    let original = Original::decode(&bytes)?;
    let mut rows = Vec::new();

    let (time, out) = timed(reps, || {
        Ok(imaging_pipeline::to_webp(&bytes, file.media, &limits)?)
    })?;
    let (width, height, ssim, psnr) = score(&original, &out.bytes, true)?;
    anyhow::ensure!(
        (width, height) == (out.width, out.height),
        "to_webp reported {}x{} but wrote {width}x{height}",
        out.width,
        out.height
    );
    rows.push(Measured {
        label: "ours (imaging_pipeline::to_webp, now), 1 thread".to_owned(),
        time,
        net: None,
        bytes: out.bytes.len(),
        width,
        height,
        ssim,
        psnr,
        note: "",
    });

    for variant in [Variant::ScaledRgb, Variant::FullDecode, Variant::Before] {
        let (time, (out, _)) = timed(reps, || convert(&bytes, file.media, &limits, variant))?;
        let (width, height, ssim, psnr) = score(&original, &out.bytes, true)?;
        rows.push(Measured {
            label: variant.label().to_owned(),
            time,
            net: None,
            bytes: out.bytes.len(),
            width,
            height,
            ssim,
            psnr,
            note: "",
        });
    }

    for threads in [2, 1] {
        let output = scratch.join(format!("{}.pyvips.webp", file.name));
        let settings = (limits.max_edge, limits.webp_quality, WEBP_METHOD);
        let run = vips_in_process(&input, &output, settings, reps.max(5), threads)?;
        let webp = std::fs::read(&output)?;
        let (width, height, ssim, psnr) = score(&original, &webp, true)?;
        rows.push(Measured {
            label: format!(
                "libvips in process, {} thread(s), effort {WEBP_METHOD}",
                run.threads
            ),
            time: run.time,
            net: None,
            bytes: webp.len(),
            width,
            height,
            ssim,
            psnr,
            note: "like for like",
        });
    }

    for (tool, start_up) in startup {
        let output = scratch.join(format!("{}.webp", file.name));
        // cwebp resizes the pixels as stored: give it the size that fits in stored orientation.
        let (stored_width, stored_height) = original.stored_size();
        let stored = target_size((stored_width, stored_height), &limits);
        let (time, ()) = timed(reps, || {
            run_timed(&mut tool.command(
                &input,
                &output,
                limits.max_edge,
                stored,
                limits.webp_quality,
            ))
            .map(|_| ())
        })?;
        let webp = std::fs::read(&output)?;
        let upright = *tool != Tool::Cwebp;
        let (width, height, ssim, psnr) = score(&original, &webp, upright)?;
        rows.push(Measured {
            label: tool.label().to_owned(),
            time,
            net: Some(time.saturating_sub(*start_up)),
            bytes: webp.len(),
            width,
            height,
            ssim,
            psnr,
            note: if upright {
                "process start-up, libwebp effort 4"
            } else {
                "not upright: EXIF ignored"
            },
        });
    }
    Ok(rows)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let versions = require_tools()?;
    let limits = Limits::default();
    let scratch = std::env::temp_dir().join("imaging-bench-conversion");
    std::fs::create_dir_all(&scratch)?;
    println!(
        "Tools: {}; {} repetitions, medians.\n",
        versions.join(", "),
        options.reps
    );

    let startup = startup_costs(&options.corpus, &scratch, options.reps, limits.webp_quality)?;
    let mut table = Table::new(&["command-line tool", "start-up ms (16x16 JPEG, median)"]);
    for (tool, time) in &startup {
        table.row([tool.label().to_owned(), ms(*time)]);
    }
    println!("{}", table.render());

    let mut table = Table::new(&[
        "input",
        "converter",
        "ms",
        "ms - start-up",
        "÷ libvips in process, 2 threads",
        "÷ libvips in process, 1 thread",
        "bytes",
        "W x H",
        "SSIM (Y)",
        "PSNR dB",
        "note",
    ]);
    for file in CORPUS_FILES.iter().filter(|f| f.converted) {
        let rows = convert_file(&options.corpus, &scratch, file, options.reps, &startup)?;
        let time_of = |threads: &str| {
            rows.iter()
                .find(|r| r.label.starts_with("libvips in process") && r.label.contains(threads))
                .map_or(Duration::ZERO, |r| r.time)
        };
        let (two, one) = (time_of("2 thread"), time_of("1 thread"));
        for row in rows {
            table.row([
                file.name.to_owned(),
                row.label,
                ms(row.time),
                row.net.map_or("-".to_owned(), ms),
                ratio(row.time, two),
                ratio(row.time, one),
                row.bytes.to_string(),
                format!("{}x{}", row.width, row.height),
                format!("{:.4}", row.ssim),
                format!("{:.2}", row.psnr),
                row.note.to_owned(),
            ]);
        }
    }
    println!("{}", table.render());

    println!("{}", stage_table(&options, &limits)?);
    println!("{}", encoder_table(&options, &limits)?);
    println!("{}", other_stages(&options, &limits)?);
    Ok(())
}

/// Stage medians of the replica, before and now, for each converted file.
fn stage_table(options: &Options, limits: &Limits) -> anyhow::Result<String> {
    let mut table = Table::new(&[
        "input", "variant", "decode", "orient", "resize", "encode", "total ms",
    ]);
    for file in CORPUS_FILES.iter().filter(|f| f.converted) {
        let bytes = read(&options.corpus, file.name)?;
        for variant in [
            Variant::Before,
            Variant::FullDecode,
            Variant::ScaledRgb,
            Variant::Current,
        ] {
            let mut runs: Vec<StageTimes> = Vec::new();
            convert(&bytes, file.media, limits, variant)?;
            for _ in 0..options.reps {
                runs.push(convert(&bytes, file.media, limits, variant)?.1);
            }
            let stage = |f: fn(&StageTimes) -> Duration| ms(median(runs.iter().map(f).collect()));
            table.row([
                file.name.to_owned(),
                variant.label().to_owned(),
                stage(|t| t.decode),
                stage(|t| t.orient),
                stage(|t| t.resize),
                stage(|t| t.encode),
                stage(StageTimes::total),
            ]);
        }
    }
    Ok(table.render())
}

/// libwebp settings on the same resized photo: time, size and SSIM against the reference.
fn encoder_table(options: &Options, limits: &Limits) -> anyhow::Result<String> {
    let name = "photo-upright.jpg";
    let bytes = read(&options.corpus, name)?;
    let original = Original::decode(&bytes)?;
    let (pixels, size) = encoder_input(&bytes, MediaType::Jpeg, limits)?;
    let mut table = Table::new(&[
        "libwebp settings (photo-upright.jpg at 2048x1536)",
        "encode ms",
        "bytes",
        "SSIM (Y)",
        "PSNR dB",
    ]);
    let base = webp::WebPConfig {
        method: LIBWEBP_DEFAULT_METHOD,
        ..lossy_config(limits.webp_quality)?
    };
    let variants: Vec<(&str, webp::WebPConfig)> = vec![
        ("defaults: method 4, thread_level 0", base),
        (
            "method 4, thread_level 1",
            webp::WebPConfig {
                thread_level: 1,
                ..base
            },
        ),
        ("method 3", webp::WebPConfig { method: 3, ..base }),
        (
            "method 2 (the pipeline now)",
            webp::WebPConfig { method: 2, ..base },
        ),
        (
            "method 4, segments 1",
            webp::WebPConfig {
                segments: 1,
                ..base
            },
        ),
    ];
    for (label, config) in variants {
        let (time, webp) = timed(options.reps, || encode_rgb(&pixels, size, &config))?;
        let (_, _, ssim, psnr) = score(&original, &webp, true)?;
        table.row([
            label.to_owned(),
            ms(time),
            webp.len().to_string(),
            format!("{ssim:.4}"),
            format!("{psnr:.2}"),
        ]);
    }
    Ok(table.render())
}

/// The pipeline's other CPU-bound stages, median times.
fn other_stages(options: &Options, limits: &Limits) -> anyhow::Result<String> {
    let photo = read(&options.corpus, "photo-upright.jpg")?;
    let pdf = read(&options.corpus, "receipts-10p.pdf")?;
    let report = imaging_pipeline::start_report(&photo, MediaType::Jpeg, limits)?;
    let mut table = Table::new(&["operation", "input", "result", "ms (median)"]);
    let receipt = imaging_bench::uploads::corpus::receipt_jpeg()?;
    for (input, bytes) in [
        ("photo-upright.jpg, 12 MP".to_owned(), &photo),
        (
            format!("receipt photo, 360x480, {} bytes", receipt.len()),
            &receipt,
        ),
    ] {
        let (before, (image, _)) = timed(options.reps, || {
            Ok(imaging_pipeline::webp_stages::decode(
                bytes,
                MediaType::Jpeg,
                limits,
            )?)
        })?;
        table.row([
            "JPEG validation before: full decode".to_owned(),
            input.clone(),
            format!("{}x{}", image.width(), image.height()),
            ms(before),
        ]);
        let (now, inspected) = timed(options.reps, || {
            Ok(imaging_pipeline::inspect(bytes, MediaType::Jpeg, limits)?)
        })?;
        table.row([
            format!(
                "JPEG validation now: inspect, entropy decode at 1/8 ({:.1}x less time)",
                before.as_secs_f64() / now.as_secs_f64()
            ),
            input,
            format!("{}x{}", inspected.width, inspected.height),
            ms(now),
        ]);
    }
    let (time, inspected) = timed(options.reps, || {
        Ok(imaging_pipeline::inspect(&pdf, MediaType::Pdf, limits)?)
    })?;
    table.row([
        "inspect (parse, encryption check)".to_owned(),
        format!("receipts-10p.pdf, {} bytes", pdf.len()),
        format!("{} pages", inspected.page_count),
        ms(time),
    ]);
    let (time, out) = timed(options.reps, || {
        Ok(imaging_pipeline::start_report(
            &photo,
            MediaType::Jpeg,
            limits,
        )?)
    })?;
    table.row([
        "start_report (JPEG embedded as-is)".to_owned(),
        "photo-upright.jpg".to_owned(),
        format!("{} page, {} bytes", out.page_count, out.bytes.len()),
        ms(time),
    ]);
    let (time, out) = timed(options.reps, || {
        Ok(imaging_pipeline::append_to_report(
            &report.layout,
            report.bytes.len() as u64,
            report.page_count,
            &photo,
            MediaType::Jpeg,
            limits,
        )?)
    })?;
    table.row([
        "append_to_report, a JPEG".to_owned(),
        "1-page report + photo-upright.jpg".to_owned(),
        format!(
            "{} pages, {}-byte increment",
            out.page_count,
            out.bytes.len()
        ),
        ms(time),
    ]);
    let (time, out) = timed(options.reps, || {
        Ok(imaging_pipeline::append_to_report(
            &report.layout,
            report.bytes.len() as u64,
            report.page_count,
            &pdf,
            MediaType::Pdf,
            limits,
        )?)
    })?;
    table.row([
        "append_to_report, a PDF".to_owned(),
        "1-page report + receipts-10p.pdf".to_owned(),
        format!(
            "{} pages, {}-byte increment",
            out.page_count,
            out.bytes.len()
        ),
        ms(time),
    ]);
    Ok(table.render())
}
