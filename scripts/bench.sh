#!/usr/bin/env bash
# Builds the release binaries, makes the benchmark corpus and prints every benchmark table.
# Usage: scripts/bench.sh [--quick]      (from anywhere; results are described in bench/README.md)
#   --quick: 3 repetitions per conversion and a few uploads per row, to check that all works.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v cwebp >/dev/null 2>&1 || missing+=(webp)
command -v vips >/dev/null 2>&1 || missing+=(libvips-tools)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
command -v heif-convert >/dev/null 2>&1 || missing+=(libheif-examples)
command -v tiff2pdf >/dev/null 2>&1 || missing+=(libtiff-tools)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -e /usr/include/libde265/de265.h ] || missing+=(libde265-dev)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# libvips in process (the fair conversion baseline) through pyvips, in a venv of its own.
venv=target/bench-venv
if ! "$venv/bin/python" -c 'import pyvips' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyvips
fi
export IMAGING_BENCH_PYTHON="$PWD/$venv/bin/python"

cargo build --release --locked -q -p imaging-bench --bins
cargo build --release --locked -q -p ingest-service -p gateway --bins

reps=7
uploads_args=()
state_args=()
reports_args=()
resumable_args=()
async_args=()
events_args=()
for arg in "$@"; do
  case "$arg" in
    --quick) reps=3; uploads_args+=(--quick); state_args+=(--quick); reports_args+=(--quick); resumable_args+=(--quick); async_args+=(--quick); events_args+=(--quick) ;;
    *) echo "unknown argument: $arg (usage: scripts/bench.sh [--quick])" >&2; exit 2 ;;
  esac
done

corpus=target/bench-corpus
target/release/corpus "$corpus"

echo "== machine"
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
echo "== conversion"
target/release/conversion "$corpus" --reps "$reps"
echo
echo "== instructions (callgrind: the same whatever the machine's load)"
target/release/instructions "$corpus"
target/release/instructions --service
echo
echo "== uploads"
target/release/uploads "${uploads_args[@]}"
echo
echo "== uploads at C=1 with every file received whole before it is written (forwarding off)"
target/release/uploads --fair-only --fair-file latency --forward-from 0 "${uploads_args[@]}"
echo
echo "== state"
target/release/state "${state_args[@]}"
echo
echo "== reports"
target/release/reports "${reports_args[@]}"
echo
echo "== formats"
target/release/formats "$corpus" --reps "$reps"
echo
echo "== resumable"
target/release/resumable "${resumable_args[@]}"
echo
echo "== async-receipts"
target/release/async-receipts "${async_args[@]}"
echo
echo "== events"
target/release/events "${events_args[@]}"
