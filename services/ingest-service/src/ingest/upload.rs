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

/// Received bytes are reserved in the memory budget in steps of this many bytes.
const RESERVE_STEP: u64 = 1024 * 1024;

/// The time an upload stream may take: silent for at most `idle`, done by `deadline`, and,
/// once `grace` has passed, averaging at least `min_rate` bytes per second since it began. The
/// rate is checked whenever the stream would be waited on, so a stream of empty or one-byte
/// messages is refused as surely as a silent one.
pub(super) struct Pace {
    started: tokio::time::Instant,
    idle: std::time::Duration,
    deadline: tokio::time::Instant,
    grace: std::time::Duration,
    min_rate: u64,
}

impl Pace {
    pub(super) fn new(limits: &crate::configuration::LimitSettings) -> Self {
        let started = tokio::time::Instant::now();
        Pace {
            started,
            idle: std::time::Duration::from_secs(limits.upload.idle_seconds),
            deadline: started + std::time::Duration::from_secs(limits.upload.deadline_seconds),
            grace: std::time::Duration::from_secs(limits.upload.rate_grace_seconds),
            min_rate: limits.upload.min_bytes_per_second,
        }
    }

    /// When `received` bytes fall behind the minimum rate (never before the grace period).
    fn behind_at(&self, received: u64) -> tokio::time::Instant {
        let due = if self.min_rate == 0 {
            std::time::Duration::MAX
        } else {
            // `received` bytes are enough until received / min_rate seconds have passed.
            std::time::Duration::from_secs_f64(received as f64 / self.min_rate as f64)
        };
        self.started
            + due
                .max(self.grace)
                .min(std::time::Duration::from_secs(1 << 32))
    }

    /// The next item of `stream`, or `UPLOAD_TIMEOUT` if it does not come in time.
    pub(super) async fn next<S: Stream + Unpin>(
        &self,
        stream: &mut S,
        received: u64,
    ) -> Result<Option<S::Item>, IngestError> {
        let now = tokio::time::Instant::now();
        let until = (now + self.idle)
            .min(self.deadline)
            .min(self.behind_at(received));
        if until <= now {
            return Err(IngestError::UploadTimeout);
        }
        tokio::time::timeout_at(until, stream.next())
            .await
            .map_err(|_| IngestError::UploadTimeout)
    }
}

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
            // A replay stores nothing: the bytes are only hashed, and the quota does not
            // apply. It holds a slot while it is received, like any upload, so replays cannot
            // get round the caps.
            let _admitted = self.admission.admit(&plan.workspace, &plan.claims.sub)?;
            let (received, _) = self.receive(&plan, bytes, false, false).await?;
            let record = Self::replay(done, &received.sha256)?;
            return Ok(Uploaded {
                record,
                replayed: true,
            });
        }
        self.precheck_quota(&plan).await?;
        let admitted = self.admission.admit(&plan.workspace, &plan.claims.sub)?;
        let (received, held) = self.receive(&plan, bytes, true, true).await?;
        let ingestor = self.clone();
        super::to_the_end("upload", async move {
            let finished = ingestor.finish(plan, received).await;
            drop((admitted, held));
            finished
        })
        .await
    }

    /// Reads the stream to its end under the limits; `keep` = false only hashes the bytes.
    /// Kept bytes are reserved in the memory budget as they arrive, a mebibyte at a time; the
    /// reservation is returned with them. With `forward`, an upload kept as sent is written to
    /// storage as it arrives (see [`super::forward`]), completed only once it has passed the
    /// checks here.
    pub(super) async fn receive<S>(
        &self,
        plan: &UploadPlan,
        bytes: S,
        keep: bool,
        forward: bool,
    ) -> Result<(Received, Reserved), IngestError>
    where
        S: Stream<Item = Result<Bytes, IngestError>> + Send,
    {
        let mut receiver = Receiver::new(
            plan.media,
            plan.declared_size,
            plan.max_bytes,
            self.limits.upload.max_chunk_bytes,
            keep,
        );
        let mut forward = if keep && forward {
            self.forward(plan)
        } else {
            None
        };
        // A forwarded upload's write takes its CRC32C as it streams (a whole PUT after a failed
        // one computes it then).
        if keep && self.objects.checks_crc32c() && forward.is_none() {
            receiver = receiver.with_crc32c();
        }
        receiver = receiver.pooled(&self.buffers);
        let mut bytes = std::pin::pin!(bytes);
        let pace = Pace::new(&self.limits);
        let mut held = Reserved::default();
        let mut early = None;
        if forward.is_some() {
            // The chunks queued for storage, besides the received bytes.
            held.merge(
                self.budget
                    .reserve(super::forward::queued_bytes(&self.limits))
                    .await?,
            );
            early = self.early_check(plan).await;
        }
        let streamed = async {
            // A stream that goes silent, sends too slowly or for too long gives its slot back.
            while let Some(chunk) = pace.next(&mut bytes, receiver.len()).await? {
                let chunk = chunk?;
                let needed = receiver.len() + chunk.len() as u64;
                if keep && needed > held.bytes() {
                    let step = (needed - held.bytes()).max(RESERVE_STEP);
                    held.merge(self.budget.reserve(step).await?);
                }
                receiver.push(&chunk)?;
                if let Some(early) = &mut early {
                    early.take(self, receiver.kept(), chunk.clone()).await;
                }
                if let Some(forward) = &mut forward {
                    forward.send(chunk).await;
                }
            }
            Ok::<_, IngestError>(())
        }
        .await;
        self.metrics.bytes_received.add(
            receiver.len(),
            &[KeyValue::new("kind", plan.target.kind.name())],
        );
        streamed?;
        let mut received = receiver.finish()?;
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
        if let Some(mut forward) = forward {
            forward.end().await;
            received.forwarded = Some(forward);
        }
        if let Some(early) = early {
            early.arrived();
            received.early = Some(early);
        }
        Ok((received, held))
    }

    /// Stores a verified upload. With an idempotency key, the key is claimed first, durably:
    /// the claim is a catalog lock held for as long as the key's result is kept, released only
    /// once the result is stored (or the upload failed and stored nothing). Another upload with
    /// the key waits for the claim, then replays the result; it can never store a second image,
    /// however long the first one takes.
    pub(super) async fn finish(
        &self,
        plan: UploadPlan,
        received: Received,
    ) -> Result<Uploaded, IngestError> {
        let Some(scope) = plan.idempotency_scope() else {
            let record = self.store(&plan, received).await?;
            return Ok(Uploaded {
                record,
                replayed: false,
            });
        };
        let timing = super::LockTiming {
            wait: self.locks.wait,
            ttl: super::idempotency::IDEMPOTENCY_TTL,
        };
        let claim =
            super::lock::TargetLock::acquire(self.catalog.clone(), format!("idem:{scope}"), timing)
                .await?;
        // Another upload with this key may have finished while this one was received.
        let prior = match self.prior(&plan).await {
            Ok(prior) => prior,
            Err(err) => {
                claim.release().await;
                return Err(err);
            }
        };
        if let Prior::Replay(done) = prior {
            claim.release().await;
            let record = Self::replay(done, &received.sha256)?;
            return Ok(Uploaded {
                record,
                replayed: true,
            });
        }
        let sha256 = received.sha256;
        let record = match self.store(&plan, received).await {
            Ok(record) => record,
            Err(err) => {
                // Nothing was stored (a failed store undoes itself): the key is free again.
                claim.release().await;
                return Err(err);
            }
        };
        if self.remember(&plan, &sha256, &record).await {
            claim.release().await;
        } else {
            // Without its result the key would look unused: the claim stays (and expires with
            // the result it stands for), so no second image can be stored under it.
            claim.keep();
        }
        Ok(Uploaded {
            record,
            replayed: false,
        })
    }
}
