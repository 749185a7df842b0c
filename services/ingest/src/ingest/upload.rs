//! The upload flow, one entry point: [`Ingestor::upload`] takes the caller, the header and the
//! stream of bytes, and reads straight down: check the header, replay an idempotent retry, check
//! the quota, take a slot (global, per user, per workspace), receive the bytes under the limits
//! (and an idle timeout), verify them, then store them by the target kind's policy. It records the span's `kind` and `outcome` and the upload metrics.

use super::Ingestor;
use super::budget::Reserved;
use super::idempotency::Prior;
use super::plan::{UploadPlan, UploadRequest};
use super::receive::{Received, Receiver};
use crate::auth::Claims;
use crate::error::IngestError;
use crate::state::ImageRecord;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use opentelemetry::KeyValue;
use tracing::Instrument;

/// Received bytes are reserved in the memory budget in steps of this many bytes.
const RESERVE_STEP: u64 = 1024 * 1024;

/// A finished upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The stored record.
    pub record: ImageRecord,
    /// True if this is a replay of an earlier upload with the same idempotency key.
    pub replayed: bool,
}

impl Ingestor {
    /// Uploads `bytes` (the chunks after the header) to the target `request` names.
    ///
    /// A stream that fails (the client reset it, a malformed message) stores nothing. Once every
    /// byte has arrived, the rest runs to its end even if the caller goes away, so a rollback
    /// never races a half-done write.
    pub async fn upload<S>(
        &self,
        claims: Claims,
        request: UploadRequest,
        bytes: S,
    ) -> Result<Uploaded, IngestError>
    where
        S: Stream<Item = Result<Bytes, IngestError>> + Send,
    {
        let kind = request.target.kind.name();
        let span = tracing::Span::current();
        span.record("kind", kind);
        self.metrics.in_flight.add(1, &[]);
        let started = std::time::Instant::now();
        let result = self.run_upload(claims, request, bytes).await;
        self.metrics.in_flight.add(-1, &[]);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.reason().as_str_name(),
        };
        span.record("outcome", outcome);
        self.metrics
            .upload_finished(kind, outcome, started.elapsed().as_secs_f64());
        result
    }

    async fn run_upload<S>(
        &self,
        claims: Claims,
        request: UploadRequest,
        bytes: S,
    ) -> Result<Uploaded, IngestError>
    where
        S: Stream<Item = Result<Bytes, IngestError>> + Send,
    {
        let plan = self.plan(claims, request).await?;
        if let Prior::Replay(done) = self.prior(&plan).await? {
            // A replay stores nothing: the bytes are only hashed, and neither the quota nor
            // the load limits apply.
            let (received, _) = self.receive(&plan, bytes, false).await?;
            let record = Self::replay(done, &received.sha256)?;
            return Ok(Uploaded {
                record,
                replayed: true,
            });
        }
        self.precheck_quota(&plan).await?;
        let admitted = self.admission.admit(&plan.workspace, &plan.claims.sub)?;
        let (received, held) = self.receive(&plan, bytes, true).await?;
        let ingestor = self.clone();
        tokio::spawn(
            async move {
                let finished = ingestor.finish(plan, received).await;
                drop((admitted, held));
                finished
            }
            .in_current_span(),
        )
        .await
        .map_err(|err| IngestError::Internal(format!("upload task failed: {err}")))?
    }

    /// Reads the stream to its end under the limits; `keep` = false only hashes the bytes.
    /// Kept bytes are reserved in the memory budget as they arrive, a mebibyte at a time; the
    /// reservation is returned with them.
    async fn receive<S>(
        &self,
        plan: &UploadPlan,
        bytes: S,
        keep: bool,
    ) -> Result<(Received, Reserved), IngestError>
    where
        S: Stream<Item = Result<Bytes, IngestError>> + Send,
    {
        let mut receiver = Receiver::new(
            plan.media,
            plan.declared_size,
            self.limits.max_upload_bytes,
            self.limits.max_chunk_bytes,
            keep,
        );
        if keep && self.store.checks_crc32c() {
            receiver = receiver.with_crc32c();
        }
        let mut bytes = std::pin::pin!(bytes);
        let idle = std::time::Duration::from_secs(self.limits.upload_idle_seconds);
        let mut held = Reserved::default();
        let streamed = async {
            // A stream that goes silent gives its slot back after `idle`.
            while let Some(chunk) = tokio::time::timeout(idle, bytes.next())
                .await
                .map_err(|_| IngestError::UploadTimeout)?
            {
                let chunk = chunk?;
                let needed = receiver.len() + chunk.len() as u64;
                if keep && needed > held.bytes() {
                    let step = (needed - held.bytes()).max(RESERVE_STEP);
                    held.merge(self.budget.reserve(step).await?);
                }
                receiver.push(&chunk)?;
            }
            Ok::<_, IngestError>(())
        }
        .await;
        self.metrics.bytes_received.add(
            receiver.len(),
            &[KeyValue::new("kind", plan.target.kind.name())],
        );
        streamed?;
        let received = receiver.finish()?;
        if plan
            .sha256
            .is_some_and(|expected| expected != received.sha256)
        {
            return Err(IngestError::ChecksumMismatch);
        }
        if plan.declared_size != 0 && plan.declared_size != received.size {
            return Err(IngestError::SizeMismatch {
                declared: plan.declared_size,
                received: received.size,
            });
        }
        Ok((received, held))
    }

    /// Stores a verified upload; with an idempotency key, under the key's lock, so two uploads
    /// with one key store one object.
    async fn finish(&self, plan: UploadPlan, received: Received) -> Result<Uploaded, IngestError> {
        let Some(scope) = plan.idempotency_scope() else {
            let record = self.store(&plan, received).await?;
            return Ok(Uploaded {
                record,
                replayed: false,
            });
        };
        super::lock::with_lock(&self.catalog, format!("idem:{scope}"), self.locks, async {
            // Another upload with this key may have finished while this one was received.
            if let Prior::Replay(done) = self.prior(&plan).await? {
                let record = Self::replay(done, &received.sha256)?;
                return Ok(Uploaded {
                    record,
                    replayed: true,
                });
            }
            let sha256 = received.sha256;
            let record = self.store(&plan, received).await?;
            self.remember(&plan, &sha256, &record).await;
            Ok(Uploaded {
                record,
                replayed: false,
            })
        })
        .await
    }
}
