//! Every input a fuzz target once failed on (`fuzz/regressions/TARGET/`), run through that
//! target's own oracle on stable Rust, so a finding once fixed stays fixed.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;

#[global_allocator]
static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;

#[path = "../../../fuzz/oracles.rs"]
mod oracles;

/// The files of `fuzz/regressions/TARGET/` (none if the folder is absent).
fn cases(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut cases: Vec<_> = entries.map(|entry| entry.unwrap().path()).collect();
    cases.sort();
    cases
}

fn run(target: &str, oracle: fn(&[u8])) -> usize {
    let cases = cases(target);
    for path in &cases {
        eprintln!("{}", path.display());
        oracle(&std::fs::read(path).unwrap());
    }
    cases.len()
}

#[test]
fn past_findings_pass_their_targets_oracles() {
    let ran = run("inspect", oracles::inspect_target)
        + run("webp", oracles::webp_target)
        + run("report_append", oracles::report_append_target);
    assert!(ran > 0, "no regression inputs found");
}
