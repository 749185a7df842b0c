//! Receipts processed asynchronously (Concur Receipts v4, gRPC `process_async`): accepting one
//! ([`Ingestor::accept`]) receives its bytes under the dialect's limits, sniffs them, stores
//! them under `jobs/{id}/source`, reserves their quota and queues a job, in that order, then
//! answers. A worker ([`super::worker`]) runs the job through the synchronous path later.
//!
//! What a job changes is fenced: its record changes only by compare-and-set on its version,
//! together with its queue entry; its image is the receipt whose ID is the job's, created by the
//! catalog's compare-and-set, so a job done twice stores one image and charges once.

use super::Ingestor;
use super::plan::{UploadPlan, UploadRequest};
use super::target::Kind;
use crate::auth::{self, Access, Claims};
use crate::error::IngestError;
use crate::events::status_event;
use crate::state::{JobLog, JobRecord, JobStatus, Reservation, now_millis};
use crate::storage::BodyDigest;
use bytes::Bytes;
use futures::Stream;
use imaging_pipeline::MediaType;

/// How long a job's quota reservation holds if nothing ends it (a job always does, once final):
/// a job that waits longer in the queue is charged at its commit only if it still fits.
const JOB_RESERVATION_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Where a job's received bytes wait: `jobs/{id}/source`.
pub const JOB_PREFIX: &str = "jobs/";

/// The object key of a job's received bytes.
pub(crate) fn source_key(id: &str) -> String {
    format!("{JOB_PREFIX}{id}/source")
}

/// The reservation that holds a job's quota until its commit.
fn reservation_id(id: &str) -> String {
    format!("job-{id}")
}

/// A log line.
pub(crate) fn log(level: &str, message: impl Into<String>, reason: &str) -> JobLog {
    JobLog {
        level: level.to_owned(),
        message: message.into(),
        at_ms: now_millis(),
        reason: reason.to_owned(),
    }
}

/// What a completed resumable upload that queued `job` keeps as its result: the receipt's ID
/// and what was received (no object yet).
pub(super) fn accepted_record(job: &JobRecord) -> crate::state::ImageRecord {
    crate::state::ImageRecord {
        image_id: job.id.clone(),
        key: String::new(),
        workspace: job.workspace.clone(),
        owner: job.owner.clone(),
        content_type: job.content_type.clone(),
        size: job.size,
        width: 0,
        height: 0,
        page_count: 0,
        sha256: job.sha256.clone(),
        report: None,
        listed: None,
        phash: None,
        duplicates: Vec::new(),
    }
}

/// A job's ID is a receipt ID the service made: 32 hex digits.
fn valid_job_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Ingestor {
    /// The declared types the asynchronous dialect accepts.
    pub(super) fn async_accepts(&self, media: MediaType) -> bool {
        self.limits
            .async_receipts
            .types
            .iter()
            .filter_map(|declared| MediaType::from_declared(declared))
            .any(|accepted| accepted == media)
    }

    /// What an asynchronous upload's header must be: a new receipt, without idempotency key.
    pub(super) fn check_async(&self, request: &UploadRequest) -> Result<(), IngestError> {
        if request.target.kind != Kind::Receipt || !request.target.id.is_empty() {
            return Err(IngestError::invalid(
                "process_async",
                "process_async is for new receipts (kind RECEIPT, no ID)",
            ));
        }
        if !request.idempotency_key.is_empty() {
            return Err(IngestError::invalid(
                "idempotency_key",
                "an idempotency key is not taken with process_async",
            ));
        }
        Ok(())
    }

    /// Accepts a new receipt for asynchronous processing: the header's checks, the quota
    /// precheck and a slot as for an upload; the bytes received (sniffed as they arrive) under
    /// the asynchronous size limit; then, even if the caller goes away, stored, reserved and
    /// queued. Returns the job as queued (status `ACCEPTED`).
    pub async fn accept<S>(
        &self,
        claims: Claims,
        request: UploadRequest,
        bytes: S,
    ) -> Result<JobRecord, IngestError>
    where
        S: Stream<Item = Result<Bytes, IngestError>> + Send,
    {
        let plan = self.plan_async(claims, request).await?;
        self.precheck_quota(&plan).await?;
        let admitted = self.admission.admit(&plan.workspace, &plan.claims.sub)?;
        let (received, held) = self.receive(&plan, bytes, true, false).await?;
        let ingestor = self.clone();
        super::to_the_end("accept", async move {
            let queued = ingestor.queue(&plan, received).await;
            drop((admitted, held));
            queued
        })
        .await
    }

    /// Stores the received bytes, reserves their quota and queues the job; any failure undoes
    /// what was done before it.
    pub(super) async fn queue(
        &self,
        plan: &UploadPlan,
        received: super::receive::Received,
    ) -> Result<JobRecord, IngestError> {
        let id = plan.target.id.clone();
        let source = source_key(&id);
        let digest = BodyDigest {
            sha256: received.sha256,
            crc32c: received.crc32c,
        };
        self.objects
            .put(&source, received.bytes.clone(), &digest, plan.media.mime())
            .await?;
        // A resumable session's reservation gives way to the job's.
        if let Some((held, _)) = &plan.reservation
            && let Err(err) = self.quota.release(&plan.workspace, held).await
        {
            self.discard_source(&source).await;
            return Err(err.into());
        }
        let reservation = reservation_id(&id);
        let ttl = JOB_RESERVATION_TTL;
        let reserved = self
            .quota
            .reserve(
                &plan.workspace,
                &reservation,
                received.size,
                ttl,
                self.limits.quota.default_bytes,
            )
            .await;
        let refused = match reserved {
            Ok(Reservation::Granted { .. }) => None,
            Ok(Reservation::Exceeded { limit, used }) => Some(IngestError::QuotaExceeded {
                workspace: plan.workspace.clone(),
                limit,
                used,
                requested: received.size,
            }),
            Err(err) => Some(err.into()),
        };
        if let Some(err) = refused {
            self.discard_source(&source).await;
            return Err(err);
        }
        let now = now_millis();
        let job = JobRecord {
            id: id.clone(),
            workspace: plan.workspace.clone(),
            owner: plan.owner.clone(),
            caller: plan.claims.sub.clone(),
            version: 1,
            created_ms: now,
            expires_ms: now.saturating_add(self.limits.jobs.status_ttl_seconds * 1000),
            status: JobStatus::Accepted,
            attempts: 0,
            source: source.clone(),
            content_type: plan.media.mime().to_owned(),
            file_name: String::new(),
            size: received.size,
            sha256: hex::encode(received.sha256),
            reservation: Some((reservation.clone(), received.size)),
            max_side: self.limits.async_receipts.max_side,
            logs: vec![log(
                "INFO",
                format!(
                    "Receipt received: {} bytes of {}.",
                    received.size,
                    plan.media.mime()
                ),
                "",
            )],
            reason: String::new(),
            image: None,
        };
        let event = self.event(|| status_event(&job));
        if let Err(err) = self.catalog.enqueue_job(&job, event.as_deref()).await {
            // Not queued (or its reply lost): a job that did get queued finds its bytes gone and
            // ends FAILED with a reason, never half-done.
            let _ = self.quota.release(&plan.workspace, &reservation).await;
            self.discard_source(&source).await;
            return Err(err.into());
        }
        self.metrics.jobs_accepted.add(1, &[]);
        self.jobs_ready.notify_one();
        if event.is_some() {
            self.events.wrote(crate::state::JOBS_OUTBOX);
        }
        Ok(job)
    }

    /// Deletes a job's received bytes (a failure is left to the janitor).
    pub(super) async fn discard_source(&self, source: &str) {
        if let Err(err) = self.objects.delete(source).await {
            tracing::warn!(key = source, error = %err, "a job's received bytes stay until the janitor's sweep");
        }
    }

    /// The job `id`, for `claims`: its owner or an admin of its workspace (else
    /// `PERMISSION_DENIED`); unknown, expired or another workspace's: `IMAGE_NOT_FOUND`.
    pub async fn processing_status(
        &self,
        claims: &Claims,
        id: &str,
    ) -> Result<JobRecord, IngestError> {
        if !valid_job_id(id) {
            return Err(IngestError::InvalidId("id"));
        }
        let job = self
            .catalog
            .job(id)
            .await?
            .filter(|job| job.workspace == claims.ws)
            .ok_or(IngestError::ImageNotFound)?;
        auth::can_use_target(claims, Access::Concur, &job.workspace, &job.owner)?;
        Ok(job)
    }
}
