//! The domain: what an upload, a read, a delete and a registration do, wired from the pipeline,
//! the object store, the quota and the catalog. The gRPC layer only translates to and from this.
//!
//! An upload reads top to bottom in `upload.rs` ([`Ingestor::upload`]), which calls, in order:
//! `plan.rs` (the header's checks, the target, the caller's permission, the quota precheck),
//! `idempotency.rs` (a retry replays), `admission.rs` (a slot), `receive.rs` (the bytes under the
//! limits and the pace), `process.rs` (the pipeline step, under `budget.rs`'s memory), `place.rs`
//! (as the target kind's `policy.rs` says; reports through `report.rs`) and `commit.rs` (the
//! compare-and-set that makes it visible, undone by `guard.rs` on any failure).
//!
//! Receipts processed asynchronously: `jobs.rs` accepts one (received, stored, reserved,
//! queued) and answers for its status; `worker.rs` works the queue.
//!
//! The rest: `images.rs` (get, list, delete, usage), `registry.rs` (workspaces and targets),
//! `maintenance.rs` (reconcile and sweep run by the service), `lock.rs` (target locks and
//! idempotency claims), `target.rs` (target kinds and object keys), `digest.rs` (a SHA-256 that
//! can be resumed).

mod admission;
mod budget;
mod commit;
pub mod digest;
mod duplicates;
mod early_check;
mod forward;
mod guard;
mod idempotency;
mod images;
mod jobs;
mod lock;
mod maintenance;
mod place;
mod plan;
pub mod policy;
mod process;
pub mod receive;
mod registry;
mod report;
mod session;
pub mod target;
mod upload;
mod webhooks;
mod worker;

pub use idempotency::scope as idempotency_scope;
pub use images::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use jobs::JOB_PREFIX;
pub use lock::LockTiming;
pub use maintenance::Reconciled;
pub use plan::{UploadPlan, UploadRequest};
pub use session::{MAX_CLIENT_METADATA, SessionView, SessionWrite};
pub use target::{Kind, TargetRef};
pub use upload::Uploaded;
pub use worker::Failpoint;

use crate::auth::{self, Claims};
use crate::configuration::LimitSettings;
use crate::error::IngestError;
use crate::state::{Catalog, ImageRecord, Quota, TargetRecord};
use crate::storage::ObjectStore;
use crate::telemetry::Metrics;
use admission::Admission;
use budget::MemoryBudget;
use std::sync::Arc;
use std::time::Duration;

/// Runs `work` to its end in a task of its own (in the current span), so that a caller that
/// goes away (its future dropped) cannot stop it half-way; `what` names the task if it fails.
pub(crate) async fn to_the_end<T: Send + 'static>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, IngestError>> + Send + 'static,
) -> Result<T, IngestError> {
    use tracing::Instrument;
    tokio::spawn(work.in_current_span())
        .await
        .map_err(|err| IngestError::Internal(format!("{what} task failed: {err}")))?
}

/// How many times a write that lost a compare-and-set to another writer starts over.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// Everything an ingest operation needs.
#[derive(Debug, Clone)]
pub struct Ingestor {
    /// The object store (where the bytes go).
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) quota: Arc<dyn Quota>,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) limits: LimitSettings,
    pub(crate) url_ttl: Duration,
    pub(crate) locks: LockTiming,
    pub(crate) admission: Admission,
    pub(crate) budget: MemoryBudget,
    pub(crate) metrics: Metrics,
    /// Woken when this process queues a job or a worker's slot frees up.
    pub(crate) jobs_ready: Arc<tokio::sync::Notify>,
    /// Changes write their events to the outbox (`events.outbox`).
    pub(crate) outbox: bool,
    /// The outboxes this process wrote events to that its relay has not found empty since,
    /// and the signal that wakes the relay (it delivers them at once).
    pub(crate) events: Arc<crate::events::relay::Pending>,
    /// Buffers of large uploads, reused (see [`receive::BufferPool`]).
    pub(crate) buffers: Arc<receive::BufferPool>,
}

/// An image with a fresh expiring URL.
#[derive(Debug, Clone)]
pub struct ImageView {
    /// The stored record.
    pub record: ImageRecord,
    /// Expiring URL.
    pub url: String,
    /// How long the URL stays valid.
    pub url_ttl: Duration,
}

/// A workspace's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageView {
    /// Limit in bytes.
    pub limit: u64,
    /// Used bytes.
    pub used: u64,
}

impl Ingestor {
    /// Wires the backends.
    pub fn new(
        objects: Arc<dyn ObjectStore>,
        quota: Arc<dyn Quota>,
        catalog: Arc<dyn Catalog>,
        limits: LimitSettings,
        url_ttl: Duration,
        locks: LockTiming,
    ) -> Self {
        let admission = Admission::new(
            limits.admission.max_in_flight,
            limits.admission.max_per_user,
            limits.admission.max_per_workspace,
        );
        let budget = MemoryBudget::new(
            limits.admission.memory_budget_bytes,
            Duration::from_millis(limits.admission.memory_wait_millis),
        );
        Self {
            budget,
            objects,
            quota,
            catalog,
            limits,
            url_ttl,
            locks,
            admission,
            metrics: Metrics::global(),
            jobs_ready: Arc::default(),
            outbox: true,
            events: Arc::default(),
            buffers: Arc::default(),
        }
    }

    /// Whether changes write events (on by default).
    #[must_use]
    pub fn with_outbox(mut self, outbox: bool) -> Self {
        self.outbox = outbox;
        self
    }

    /// The outboxes this process wrote to, for its relay.
    pub fn pending_events(&self) -> Arc<crate::events::relay::Pending> {
        self.events.clone()
    }

    /// The event `make` builds, if changes write events.
    pub(crate) fn event(&self, make: impl FnOnce() -> String) -> Option<String> {
        self.outbox.then(make)
    }

    /// Refuses every new upload from now on (uploads already admitted go on).
    pub fn stop_admitting(&self) {
        self.admission.close();
    }

    /// Resolves a target to its workspace and owner and checks that `claims` may use it.
    /// Loose receipts are resolved from their image record (`None` if the receipt is unknown).
    pub(crate) async fn authorize(
        &self,
        claims: &Claims,
        target: &TargetRef,
    ) -> Result<Option<TargetRecord>, IngestError> {
        let found = match target.kind {
            // A receipt is its owner's workspace's: looked up there, another workspace's
            // receipt is not found.
            Kind::Receipt if !target::valid_id(&claims.ws) => None,
            Kind::Receipt => self
                .catalog
                .image(&claims.ws, &target.catalog_key())
                .await?
                .map(|image| TargetRecord {
                    workspace: image.workspace,
                    owner: image.owner,
                }),
            _ => self.catalog.target(&target.catalog_key()).await?,
        };
        if let Some(record) = &found {
            auth::can_use_target(
                claims,
                target.kind.policy().access,
                &record.workspace,
                &record.owner,
            )?;
        }
        Ok(found)
    }
}

/// May `claims` use the image `record`? Read from the record itself (its workspace and owner),
/// not from what the target names now.
pub(crate) fn authorize_record(
    claims: &Claims,
    kind: Kind,
    record: &ImageRecord,
) -> Result<(), IngestError> {
    auth::can_use_target(
        claims,
        kind.policy().access,
        &record.workspace,
        &record.owner,
    )
}

fn not_found(kind: Kind) -> IngestError {
    match kind {
        Kind::Receipt => IngestError::ImageNotFound,
        _ => IngestError::TargetNotFound("target"),
    }
}
