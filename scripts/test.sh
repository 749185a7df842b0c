#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks, then checks formatting and lints and runs every test.
# Usage: scripts/test.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
command -v qpdf >/dev/null 2>&1 || missing+=(qpdf)
command -v pdfinfo >/dev/null 2>&1 || missing+=(poppler-utils)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# script: runs the CLI on a pseudo-terminal in its progress-bar test; openssl makes the
# certificates of its TLS test.
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# NATS with JetStream: the event relay's broker in the events tests.
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
# libheif is built from its sources with cmake (libheif-rs's embedded-libheif), decoding HEVC
# through the system's libde265.
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -e /usr/include/libde265/de265.h ] || missing+=(libde265-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# pypdf: the fourth PDF reader the report tests check with (the strictest about object numbers).
command -v python3 >/dev/null 2>&1 || { sudo_if_needed apt-get update -qq; sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip; }
# moto's S3 server: a second S3 implementation, for the janitor's multipart sweep (s3s-fs cannot
# list multipart uploads).
pip_packages=()
python3 -c 'import pypdf' >/dev/null 2>&1 || pip_packages+=(pypdf)
# Pillow and pillow-heif: independent readers of the JPEG, PNG, GIF, TIFF and HEIC the format
# tests store and start from.
python3 -c 'import PIL, pillow_heif' >/dev/null 2>&1 || pip_packages+=(pillow pillow-heif)
python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1 || pip_packages+=('moto[server]')
# tuspy: a tus client written elsewhere, for the resumable-upload tests.
python3 -c 'import tusclient' >/dev/null 2>&1 || pip_packages+=('tuspy==1.1.0')
# standardwebhooks: the reference verifier of webhook signatures, in the events tests' endpoint.
python3 -c 'import standardwebhooks' >/dev/null 2>&1 || pip_packages+=('standardwebhooks==1.1.0')
if [ "${#pip_packages[@]}" -gt 0 ]; then
  echo "installing: ${pip_packages[*]}"
  python3 -m pip install --quiet "${pip_packages[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${pip_packages[@]}"
fi

# tus-js-client (under Node.js): the other tus client of the resumable-upload tests, at the
# version tests/clients/package-lock.json pins.
if ! command -v npm >/dev/null 2>&1; then
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
npm ci --prefix tests/clients --no-audit --no-fund --silent

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs), then re-run" >&2
  exit 1
fi
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
