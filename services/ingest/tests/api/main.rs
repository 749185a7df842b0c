//! End-to-end tests of the ingest service over real gRPC, on real backends: an S3 server over
//! HTTP with SigV4 (`s3s-fs`) and a `redis-server` started per test, and the embedded default.

#![allow(clippy::unwrap_used)]

mod contract;
mod errors;
mod helpers;
mod lifecycle;
mod protocol;
mod races;
mod resilience;
mod uploads;
