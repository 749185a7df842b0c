//! How fast and how cheaply the ingest service refuses what it must refuse: a decompression bomb
//! and an oversize upload, sent over gRPC. The refusal must carry the expected code and reason;
//! anything else fails the benchmark.

use super::load::{grpc_upload, upload_messages};
use crate::memory::{reset_peak, rss};
use anyhow::bail;
use bytes::Bytes;
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// An upload that must be refused, and how.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Label in tables.
    pub case: String,
    /// The bytes sent (to a new loose receipt).
    pub bytes: Bytes,
    /// Declared content type.
    pub content_type: &'static str,
    /// `declared_size` in the header (0 = not declared).
    pub declared_size: u64,
    /// Expected gRPC code.
    pub code: tonic::Code,
    /// Expected `ErrorInfo` reason.
    pub reason: &'static str,
    /// Expected `ErrorInfo` metadata `cause`, if any.
    pub cause: Option<&'static str>,
}

/// What refusing cost.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The case.
    pub case: String,
    /// Bytes sent per try.
    pub bytes: usize,
    /// What the service answered (`CODE / REASON`).
    pub answer: String,
    /// Measured tries.
    pub tries: usize,
    /// Median time from sending the header to the refusal, client side.
    pub median: Duration,
    /// Slowest try.
    pub max: Duration,
    /// Peak RSS of the service during the tries, minus its RSS before them, in KiB.
    pub growth_kib: u64,
}

/// Sends `refusal` once unmeasured (warm-up), then `tries` times while watching the peak RSS of
/// the service (`service_pid`).
pub async fn measure(
    client: &ImageIngestClient<Channel>,
    token: &str,
    refusal: &Refusal,
    tries: usize,
    service_pid: u32,
) -> anyhow::Result<Refused> {
    let mut answer = send(client, token, refusal).await?.1;
    reset_peak(service_pid)?;
    let before = rss(service_pid)?.current_kib;
    let mut times = Vec::with_capacity(tries);
    for _ in 0..tries {
        let (took, said) = send(client, token, refusal).await?;
        times.push(took);
        answer = said;
    }
    let peak = rss(service_pid)?.peak_kib;
    times.sort();
    Ok(Refused {
        case: refusal.case.clone(),
        bytes: refusal.bytes.len(),
        answer,
        tries,
        median: times.get(times.len() / 2).copied().unwrap_or_default(),
        max: times.last().copied().unwrap_or_default(),
        growth_kib: peak.saturating_sub(before),
    })
}

/// One try: the time it took and the answer, checked against the expected refusal.
async fn send(
    client: &ImageIngestClient<Channel>,
    token: &str,
    refusal: &Refusal,
) -> anyhow::Result<(Duration, String)> {
    let target = v1::Target {
        kind: v1::TargetKind::Receipt as i32,
        id: String::new(),
        workspace_id: String::new(),
    };
    let messages = upload_messages(
        target,
        &refusal.bytes,
        refusal.content_type,
        "refused.bin",
        refusal.declared_size,
    );
    let started = Instant::now();
    let answered = grpc_upload(client, token, messages).await?;
    let took = started.elapsed();
    let status = match answered {
        Ok(stored) => bail!(
            "{}: accepted (stored {} bytes) instead of refused",
            refusal.case,
            stored.size_bytes
        ),
        Err(status) => status,
    };
    let info = status.get_error_details().error_info().cloned();
    let reason = info.as_ref().map(|i| i.reason.clone()).unwrap_or_default();
    let cause = info.as_ref().and_then(|i| i.metadata.get("cause").cloned());
    if status.code() != refusal.code
        || reason != refusal.reason
        || (refusal.cause.is_some() && cause.as_deref() != refusal.cause)
    {
        bail!(
            "{}: refused with {:?} {reason} (cause {cause:?}: {}) instead of {:?} {} (cause {:?})",
            refusal.case,
            status.code(),
            status.message(),
            refusal.code,
            refusal.reason,
            refusal.cause
        );
    }
    let answer = match cause {
        Some(cause) => format!("{:?} / {reason} ({cause})", status.code()),
        None => format!("{:?} / {reason}", status.code()),
    };
    Ok((took, answer))
}
