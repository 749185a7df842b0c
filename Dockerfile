# syntax=docker/dockerfile:1
#
# One Dockerfile, two images. Build either with its target:
#
#   docker build --target ingest-service -t imaging/ingest-service .
#   docker build --target gateway        -t imaging/gateway .
#
# (docker-compose.yml does this for you.) Both targets share the builder stage, so BuildKit
# compiles the workspace once. deploy/README.md describes the whole stack.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
# Builder: the Rust image already has gcc/g++/make for the C parts (libwebp, aws-lc and
# libjpeg-turbo are built with `cc`; protoc is vendored by protoc-bin-vendored); libjpeg-turbo's
# SIMD code also needs the `nasm` assembler.
# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# nasm is a build tool only (not in the runtime image); Debian's release pins its version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nasm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Only what cargo needs: every workspace member must be present (tests/ included) even though
# only three binaries are built. Docs, scripts and deploy files stay out of the build context
# hash, so editing them does not trigger a rebuild.
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY services ./services
COPY infra ./infra
COPY gateway ./gateway
COPY tests ./tests

# The registry and target/ live in cache mounts, so a rebuild after a source change only
# recompiles the workspace crates. A cache mount is not part of the image, so the binaries are
# copied out to /out inside the same RUN. `sharing=locked` keeps two parallel builds (e.g. compose
# building both targets) from writing the same target/ at once.
RUN --mount=type=cache,id=imaging-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=imaging-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=imaging-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin ingest-service --bin imaging-cli --bin gateway \
    && mkdir -p /out \
    && cp target/release/ingest-service target/release/imaging-cli target/release/gateway /out/

# ---------------------------------------------------------------------------------------------
# Runtime base: same Debian release as the builder (glibc must match), CA roots for TLS to S3 or
# an OTLP endpoint, and an unprivileged user. No HEALTHCHECK: compose (or the orchestrator)
# decides how to probe; the service speaks grpc.health.v1 and the gateway serves /readyz.
# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates is deliberately unpinned: it should track the release's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app \
    && install -d -o app -g app /app
# The embedded default writes ./data (objects and state.json); /app is the app user's.
WORKDIR /app
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# ingest-service (gRPC) plus imaging-cli, so tokens can be minted inside the container with the
# same secret the service verifies with.
# ---------------------------------------------------------------------------------------------
FROM runtime AS ingest-service
COPY --from=builder /out/ingest-service /out/imaging-cli /usr/local/bin/
# The built-in defaults listen on 127.0.0.1, which nothing outside the container can reach.
# APP__* variables set at run time (compose) still win over these.
ENV APP__SERVER__GRPC_ADDR=0.0.0.0:50051 \
    APP__SERVER__FILES_ADDR=0.0.0.0:8081
# 50051: gRPC. 8081: signed-URL file server, only bound with filesystem storage.
EXPOSE 50051 8081
ENTRYPOINT ["/usr/local/bin/ingest-service"]

# ---------------------------------------------------------------------------------------------
# gateway (REST)
# ---------------------------------------------------------------------------------------------
FROM runtime AS gateway
COPY --from=builder /out/gateway /usr/local/bin/
ENV APP__SERVER__LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gateway"]
