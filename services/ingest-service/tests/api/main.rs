//! End-to-end tests of the ingest service over real gRPC, on real backends: an S3 server over
//! HTTP with SigV4 (`s3s-fs`) and a `redis-server` started per test, and the embedded default.

#![allow(clippy::unwrap_used)]

/// One `#[tokio::test]` per behaviour: each runs `super::behaviour(&backend)` on the backend
/// `make` builds. The contract suites call it once per backend.
macro_rules! contract {
    ($make:path => $($behaviour:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $behaviour() {
                let backend = $make().await;
                super::$behaviour(&backend).await;
            }
        )*
    };
}

mod cli;
mod defenses;
mod duplicates;
mod errors;
mod events;
mod formats;
mod forwarding;
mod helpers;
mod hostile;
mod idempotency;
mod identity;
mod jobs;
mod lifecycle;
mod listing;
mod process;
mod protocol;
mod races;
mod reasons;
mod replicas;
mod reports;
mod resets;
mod resilience;
mod sessions;
mod state_contract;
mod storage_contract;
mod uploads;
