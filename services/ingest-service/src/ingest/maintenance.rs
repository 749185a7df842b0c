//! Operators' work run by the service itself (for a service token of every workspace), so
//! that it needs no downtime on the embedded state the service holds open: reconcile and the
//! janitor's sweep.

use super::Ingestor;
use crate::auth::{self, Claims};
use crate::error::IngestError;
use std::time::Duration;

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
    /// of interrupted writes and objects no record names, older than `grace`, and expired
    /// upload sessions. Returns how many of each were removed.
    pub async fn sweep(
        &self,
        claims: &Claims,
        grace: Duration,
    ) -> Result<(u64, u64, u64), IngestError> {
        auth::can_manage_workspace(claims, auth::ALL_WORKSPACES)?;
        let (leftovers, orphans) =
            crate::janitor::sweep(self.objects.as_ref(), self.catalog.as_ref(), grace).await?;
        let sessions = self.expire_sessions().await?;
        Ok((leftovers as u64, orphans as u64, sessions as u64))
    }
}
