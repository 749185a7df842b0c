//! End-to-end tests of the whole stack: the REST gateway and the ingest service on free ports,
//! a real `redis-server`, a real S3 server over HTTP with SigV4, driven by an ordinary HTTP
//! client.

#![allow(clippy::unwrap_used)]

mod concur;
mod defenses;
mod formats;
mod helpers;
mod overload;
mod receipts_v3;
mod receipts_v4;
mod resumable;
mod streaming;
mod workspace;
