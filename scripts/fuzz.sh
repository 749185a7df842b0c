#!/usr/bin/env bash
# Runs a coverage-guided fuzz target (cargo-fuzz, libFuzzer) on stable Rust for N minutes under
# a memory ceiling, from a seed corpus of valid files.
# Usage: scripts/fuzz.sh TARGET [MINUTES]     TARGET: inspect | webp | report_append | all
# Findings are written to fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh TARGET [MINUTES]}"
minutes="${2:-10}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
# cargo-fuzz uses unstable compiler flags (sanitizer coverage); stable allows them so.
export RUSTC_BOOTSTRAP=1
if [ "$target" = all ]; then
  for each in inspect webp report_append; do "$0" "$each" "$minutes"; done
  exit 0
fi
seeds="fuzz/corpus/$target"
if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
  cargo run --quiet -p imaging-fixtures --example seeds -- "$seeds"
fi
# The memory ceiling: a step is metered against its reservation inside the target; the process
# as a whole may not pass 2 GiB, nor any one allocation 1 GiB.
# --no-cfg-fuzzing: the targets run the code the service runs. Under cfg(fuzzing) miniz_oxide
# skips zlib's Adler-32 check, so the PDF guard would pass streams the service refuses and the
# findings would be the build's, not the service's.
cargo fuzz run --sanitizer none --release --no-cfg-fuzzing "$target" "$seeds" -- \
  -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 \
  -print_final_stats=1
