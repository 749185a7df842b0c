//! The memory estimates the service reserves before each step (`imaging_pipeline::estimate`)
//! hold: every step, run alone in a process of its own, grows that process's peak RSS by no more
//! than its estimate. RSS rather than a counting allocator, because libjpeg and libwebp allocate
//! through C's `malloc`. The estimates are also tight where the step builds no image: checking a
//! JPEG or PNG reserves no decoded image, and a JPEG converted at reduced scale reserves the
//! reduced image, not the whole one.

#![allow(clippy::unwrap_used)]

use imaging_fixtures::scenes::{photo_jpeg, screenshot};
use imaging_fixtures::{GIF_ANIMATED, PROGRESSIVE_JPEG, TIFF_G4, TIFF_LZW, with_orientation};
use imaging_pipeline::{Limits, MediaType, Step, inspect, memory_cost, to_webp};
use std::path::PathBuf;
use std::process::Command;

const MIB: u64 = 1 << 20;

/// Set in the child process: the file to run a step on, its type and the step.
const CASE_FILE: &str = "IMAGING_MEMORY_CASE_FILE";
const CASE_MEDIA: &str = "IMAGING_MEMORY_CASE_MEDIA";
const CASE_STEP: &str = "IMAGING_MEMORY_CASE_STEP";

fn media_name(media: MediaType) -> &'static str {
    match media {
        MediaType::Jpeg => "jpeg",
        MediaType::Png => "png",
        MediaType::Webp => "webp",
        MediaType::Pdf => "pdf",
        MediaType::Heic => "heic",
        MediaType::Tiff => "tiff",
        MediaType::Gif => "gif",
    }
}

fn media_from(name: &str) -> MediaType {
    [
        MediaType::Jpeg,
        MediaType::Png,
        MediaType::Webp,
        MediaType::Pdf,
        MediaType::Heic,
        MediaType::Tiff,
        MediaType::Gif,
    ]
    .into_iter()
    .find(|&media| media_name(media) == name)
    .unwrap()
}

/// A field of `/proc/self/status` in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child's side: runs one step and prints how far it raised the peak RSS.
#[test]
#[ignore = "run in a child process by every_step_stays_within_its_memory_estimate"]
fn measured_step() {
    let path =
        std::env::var(CASE_FILE).expect("run by every_step_stays_within_its_memory_estimate");
    let media = media_from(&std::env::var(CASE_MEDIA).unwrap());
    let step = std::env::var(CASE_STEP).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let limits = Limits::default();
    let estimate = match step.as_str() {
        "inspect" => memory_cost(&bytes, media, Step::Inspect, &limits).unwrap(),
        _ => memory_cost(&bytes, media, Step::Webp, &limits).unwrap(),
    };
    // Peak RSS starts again from the RSS now (Linux: "5" resets VmHWM).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    match step.as_str() {
        "inspect" => drop(inspect(&bytes, media, &limits).unwrap()),
        _ => drop(to_webp(&bytes, media, &limits).unwrap()),
    }
    let peak = status_kib("VmHWM:");
    println!(
        "MEASURED growth_kib={} estimate_kib={}",
        peak.saturating_sub(before),
        estimate / 1024
    );
}

/// Runs `step` on `bytes` in a child process: (peak RSS growth, estimate), in bytes.
fn measure(bytes: &[u8], media: MediaType, step: &str) -> (u64, u64) {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "imaging-memory-{}-{}-{step}.{}",
        std::process::id(),
        bytes.len(),
        media_name(media)
    ));
    std::fs::write(&path, bytes).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["measured_step", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CASE_FILE, &path)
        .env(CASE_MEDIA, media_name(media))
        .env(CASE_STEP, step)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|line| line.split_once("MEASURED ").map(|(_, fields)| fields))
        .unwrap_or_else(|| panic!("no measurement in {stdout}"));
    let value = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    (value("growth_kib=") * 1024, value("estimate_kib=") * 1024)
}

fn png_bytes(image: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// `jpeg` encoded as HEIC by pillow-heif (libheif and x265), as a phone would store it.
fn heic_of(jpeg: &[u8]) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("imaging-memory-heic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.jpg"), dir.join("out.heic"));
    std::fs::write(&input, jpeg).unwrap();
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, pillow_heif\nfrom PIL import Image\npillow_heif.register_heif_opener()\n\
             Image.open(sys.argv[1]).save(sys.argv[2], quality=50)",
        )
        .arg(&input)
        .arg(&output)
        .status()
        .expect("python3 with pillow-heif (the README's test command installs it)");
    assert!(status.success());
    let heic = std::fs::read(&output).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    heic
}

#[test]
fn every_step_stays_within_its_memory_estimate() {
    let photo = with_orientation(&photo_jpeg(4032, 3024, 7, 90), 6);
    let receipt = photo_jpeg(360, 480, 3, 85);
    let screen = png_bytes(&screenshot(2560, 1600, 5));
    let heic = heic_of(&photo_jpeg(4032, 3024, 7, 90));
    let cases: [(&str, &[u8], MediaType, &str); 12] = [
        ("12 MP HEIC", &heic, MediaType::Heic, "inspect"),
        ("12 MP HEIC", &heic, MediaType::Heic, "webp"),
        ("3-page G4 TIFF", TIFF_G4, MediaType::Tiff, "inspect"),
        ("2-page LZW TIFF", TIFF_LZW, MediaType::Tiff, "inspect"),
        ("animated GIF", GIF_ANIMATED, MediaType::Gif, "inspect"),
        ("12 MP photo, EXIF 6", &photo, MediaType::Jpeg, "inspect"),
        ("12 MP photo, EXIF 6", &photo, MediaType::Jpeg, "webp"),
        (
            "progressive JPEG",
            PROGRESSIVE_JPEG,
            MediaType::Jpeg,
            "inspect",
        ),
        (
            "progressive JPEG",
            PROGRESSIVE_JPEG,
            MediaType::Jpeg,
            "webp",
        ),
        ("360x480 receipt", &receipt, MediaType::Jpeg, "inspect"),
        (
            "2560x1600 PNG screenshot",
            &screen,
            MediaType::Png,
            "inspect",
        ),
        ("2560x1600 PNG screenshot", &screen, MediaType::Png, "webp"),
    ];
    let mut measured = Vec::new();
    for (name, bytes, media, step) in cases {
        let (growth, estimate) = measure(bytes, media, step);
        println!(
            "{name}, {step}: peak RSS grew {:.1} MiB, estimate {:.1} MiB",
            growth as f64 / MIB as f64,
            estimate as f64 / MIB as f64
        );
        measured.push((name, step, growth, estimate));
    }
    for &(name, step, growth, estimate) in &measured {
        assert!(
            growth <= estimate,
            "{name}, {step}: peak RSS grew {growth} bytes, over the estimate of {estimate}"
        );
    }
    // Checking builds no image: a 12 MP JPEG (36 MB decoded) or a 2560x1600 PNG reserves a few
    // MiB. Converting a 12 MP JPEG reserves its 5/8-scale decode, not the 36 MB image.
    let estimate_of = |name: &str, step: &str| {
        measured
            .iter()
            .find(|m| m.0 == name && m.1 == step)
            .unwrap()
            .3
    };
    assert!(estimate_of("12 MP photo, EXIF 6", "inspect") < 8 * MIB);
    assert!(estimate_of("2560x1600 PNG screenshot", "inspect") < 8 * MIB);
    assert!(estimate_of("360x480 receipt", "inspect") < 8 * MIB);
    assert!(estimate_of("12 MP photo, EXIF 6", "webp") < 80 * MIB);
}
