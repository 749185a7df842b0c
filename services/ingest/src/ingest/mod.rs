//! The domain: what an upload, a read, a delete and a registration do, wired from the pipeline,
//! the object store, the quota and the catalog. The gRPC layer only translates to and from this.

mod admission;
mod budget;
pub mod digest;
mod guard;
mod idempotency;
mod lock;
mod plan;
pub mod policy;
pub mod receive;
mod store;
pub mod target;
mod upload;

pub use idempotency::scope as idempotency_scope;
pub use lock::LockTiming;
pub use plan::{UploadPlan, UploadRequest};
pub use target::{Kind, TargetRef};
pub use upload::Uploaded;

use crate::auth::{self, Claims};
use crate::configuration::LimitSettings;
use crate::error::IngestError;
use crate::state::{Catalog, ImageRecord, Listing, Quota, Registered, Swap, Swapped, TargetRecord};
use crate::storage::ObjectStore;
use crate::telemetry::Metrics;
use admission::Admission;
use budget::MemoryBudget;
use lock::with_lock;
use std::sync::Arc;
use std::time::Duration;

/// How many times a write that lost a compare-and-set to another writer starts over.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// Everything an ingest operation needs.
#[derive(Debug, Clone)]
pub struct Ingestor {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) quota: Arc<dyn Quota>,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) limits: LimitSettings,
    pub(crate) url_ttl: Duration,
    pub(crate) locks: LockTiming,
    pub(crate) admission: Admission,
    pub(crate) budget: MemoryBudget,
    pub(crate) metrics: Metrics,
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
        store: Arc<dyn ObjectStore>,
        quota: Arc<dyn Quota>,
        catalog: Arc<dyn Catalog>,
        limits: LimitSettings,
        url_ttl: Duration,
        locks: LockTiming,
    ) -> Self {
        let admission = Admission::new(
            limits.max_in_flight_uploads,
            limits.max_uploads_per_user,
            limits.max_uploads_per_workspace,
        );
        let budget = MemoryBudget::new(
            limits.memory_budget_bytes,
            Duration::from_millis(limits.memory_wait_millis),
        );
        Self {
            budget,
            store,
            quota,
            catalog,
            limits,
            url_ttl,
            locks,
            admission,
            metrics: Metrics::global(),
        }
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

    /// The target's current image with a fresh URL.
    pub async fn get_image(
        &self,
        claims: &Claims,
        target: &TargetRef,
    ) -> Result<ImageView, IngestError> {
        target.validate(false)?;
        let Some(owner) = self.authorize(claims, target).await? else {
            return Err(not_found(target.kind));
        };
        let record = self
            .catalog
            .image(&owner.workspace, &target.catalog_key())
            .await?
            .ok_or(IngestError::ImageNotFound)?;
        // The image is its record's owner's, whoever the target names now.
        authorize_record(claims, target.kind, &record)?;
        let url = self.store.url(&record.key, self.url_ttl).await?;
        Ok(ImageView {
            record,
            url,
            url_ttl: self.url_ttl,
        })
    }

    /// Deletes the target's image and releases its bytes; returns the bytes released.
    pub async fn delete_image(
        &self,
        claims: &Claims,
        target: &TargetRef,
    ) -> Result<u64, IngestError> {
        target.validate(false)?;
        let Some(owner) = self.authorize(claims, target).await? else {
            return Err(not_found(target.kind));
        };
        self.remove_image(&owner.workspace, target, Some(claims))
            .await?
            .ok_or(IngestError::ImageNotFound)
    }

    /// Removes the image record of `target` in `workspace` (checked against `claims` if given)
    /// and releases its bytes, then deletes its object; the bytes released, `None` if there was
    /// no image.
    async fn remove_image(
        &self,
        workspace: &str,
        target: &TargetRef,
        claims: Option<&Claims>,
    ) -> Result<Option<u64>, IngestError> {
        let catalog_key = target.catalog_key();
        let lock = format!("target:{catalog_key}");
        with_lock(&self.catalog, lock, self.locks, async {
            // The record goes first, by compare-and-set with its bytes given back in the same
            // step; an object left behind by a failed delete is only an orphan.
            for _ in 0..MAX_ATTEMPTS {
                let Some(record) = self.catalog.image(workspace, &catalog_key).await? else {
                    return Ok(None);
                };
                if let Some(claims) = claims {
                    authorize_record(claims, target.kind, &record)?;
                }
                let removed = self
                    .catalog
                    .swap_image(&Swap {
                        key: &catalog_key,
                        expected: Some(&record.key),
                        image: None,
                        workspace: &record.workspace,
                        release: record.size,
                        reservation: None,
                        default_limit: self.limits.default_quota_bytes,
                        listing: record.listed.as_deref().map(|entry| Listing::Remove {
                            owner: &record.owner,
                            entry,
                        }),
                    })
                    .await?;
                if removed == Swapped::Done {
                    if let Err(err) = self.store.delete(&record.key).await {
                        tracing::error!(key = %record.key, error = %err, "deleted image's object not removed; it is an orphan");
                    }
                    return Ok(Some(record.size));
                }
            }
            Err(IngestError::Busy)
        })
        .await
    }

    /// A page of `owner`'s loose receipts in the caller's workspace (the caller's own if
    /// `owner` is empty), newest first: their IDs and the token of the next page (`None` on the
    /// last). `page_size` 0 is 25; more than 100 is 100.
    pub async fn list_receipts(
        &self,
        claims: &Claims,
        owner: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<String>, Option<String>), IngestError> {
        if !target::valid_id(&claims.ws) {
            return Err(IngestError::InvalidId("token ws"));
        }
        let owner = auth::acting_owner(claims, owner)?;
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size < 0 => {
                return Err(IngestError::invalid(
                    "page_size",
                    "page_size must not be negative",
                ));
            }
            size => usize::try_from(size)
                .unwrap_or(MAX_PAGE_SIZE)
                .min(MAX_PAGE_SIZE),
        };
        let after = match page_token {
            "" => None,
            token if token.len() <= 200 && crate::state::listing_image(token).is_some() => {
                Some(token)
            }
            _ => {
                return Err(IngestError::invalid(
                    "page_token",
                    "not a page token of this list",
                ));
            }
        };
        let mut entries = self
            .catalog
            .listed(&claims.ws, &owner, after, size + 1)
            .await?;
        let next = if entries.len() > size {
            entries.truncate(size);
            entries.last().cloned()
        } else {
            None
        };
        let ids = entries
            .iter()
            .filter_map(|entry| crate::state::listing_image(entry).map(str::to_owned))
            .collect();
        Ok((ids, next))
    }

    /// A workspace's quota limit and usage.
    pub async fn usage(&self, claims: &Claims, workspace: &str) -> Result<UsageView, IngestError> {
        if !target::valid_id(workspace) {
            return Err(IngestError::InvalidId("workspace_id"));
        }
        auth::can_read_usage(claims, workspace)?;
        let limit = self
            .quota
            .limit(workspace)
            .await?
            .ok_or(IngestError::TargetNotFound("workspace"))?;
        let used = self.quota.used(workspace).await?;
        Ok(UsageView { limit, used })
    }

    /// Registers a workspace with `quota` bytes (0 = the default); returns the limit set.
    pub async fn register_workspace(
        &self,
        claims: &Claims,
        workspace: &str,
        quota: u64,
    ) -> Result<u64, IngestError> {
        if !target::valid_id(workspace) {
            return Err(IngestError::InvalidId("workspace_id"));
        }
        auth::can_manage_workspace(claims, workspace)?;
        let limit = if quota == 0 {
            self.limits.default_quota_bytes
        } else {
            quota
        };
        self.quota.set_limit(workspace, limit).await?;
        Ok(limit)
    }

    /// Registers a target owned by `owner` in `workspace`; true if it was new, false if it was
    /// registered identically. A target never moves: registered with another workspace or owner,
    /// it is refused with `TARGET_CONFLICT`.
    pub async fn register_target(
        &self,
        claims: &Claims,
        target: &TargetRef,
        workspace: &str,
        owner: &str,
    ) -> Result<bool, IngestError> {
        target.validate(false)?;
        if target.kind == Kind::Receipt {
            return Err(IngestError::invalid(
                "target.kind",
                "receipts are created by uploading, not registered",
            ));
        }
        if !target::valid_id(workspace)
            || (target.kind == Kind::WorkspaceExpense && target.workspace != workspace)
        {
            return Err(IngestError::InvalidId("workspace_id"));
        }
        if owner.is_empty() {
            return Err(IngestError::invalid("owner", "owner is required"));
        }
        auth::can_manage_workspace(claims, workspace)?;
        if self.quota.limit(workspace).await?.is_none() {
            return Err(IngestError::TargetNotFound("workspace"));
        }
        let record = TargetRecord {
            workspace: workspace.to_owned(),
            owner: owner.to_owned(),
        };
        match self
            .catalog
            .put_target(&target.catalog_key(), &record)
            .await?
        {
            Registered::Created => Ok(true),
            Registered::Unchanged => Ok(false),
            Registered::Conflict(_) => Err(IngestError::TargetConflict),
        }
    }

    /// Forgets a target and removes its image, if any, giving its bytes back to the workspace
    /// that was charged; true if the target existed. A target registered again later starts
    /// without an image, whoever it is registered for.
    pub async fn remove_target(
        &self,
        claims: &Claims,
        target: &TargetRef,
    ) -> Result<bool, IngestError> {
        target.validate(false)?;
        let key = target.catalog_key();
        let Some(record) = self.catalog.target(&key).await? else {
            auth::can_manage_workspace(claims, &claims.ws)?;
            return Ok(false);
        };
        auth::can_manage_workspace(claims, &record.workspace)?;
        self.remove_image(&record.workspace, target, None).await?;
        Ok(self.catalog.remove_target(&key).await?)
    }
}

/// What an operator's reconcile found and did.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// Workspaces whose usage counter differed from the records.
    pub drifts: Vec<crate::reconcile::Drift>,
    /// Receipt-list repairs.
    pub listings: crate::reconcile::ListingRepairs,
}

impl Ingestor {
    /// Reconcile, run by the service itself (for a service token of every workspace), so that
    /// it needs no downtime on the embedded state file the service holds open.
    pub async fn reconcile(
        &self,
        claims: &Claims,
        dry_run: bool,
    ) -> Result<Reconciled, IngestError> {
        // A service token whose `ws` is `*`: the only one that manages "every workspace".
        auth::can_manage_workspace(claims, auth::ALL_WORKSPACES)?;
        let drifts =
            crate::reconcile::reconcile(self.quota.as_ref(), self.catalog.as_ref(), !dry_run)
                .await?;
        let listings =
            crate::reconcile::reconcile_listings(self.catalog.as_ref(), !dry_run).await?;
        Ok(Reconciled { drifts, listings })
    }

    /// The janitor's sweep, run by the service itself (as [`Ingestor::reconcile`]): leftovers
    /// of interrupted writes and objects no record names, older than `grace`. Returns how many
    /// of each were removed.
    pub async fn sweep(&self, claims: &Claims, grace: Duration) -> Result<(u64, u64), IngestError> {
        auth::can_manage_workspace(claims, auth::ALL_WORKSPACES)?;
        let (leftovers, orphans) =
            crate::janitor::sweep(self.store.as_ref(), self.catalog.as_ref(), grace).await?;
        Ok((leftovers as u64, orphans as u64))
    }
}

/// Receipts per page of a listing when the caller names no size.
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// The most receipts per page of a listing.
pub const MAX_PAGE_SIZE: usize = 100;

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
