//! Reconcile: recomputes every workspace's quota usage from what is in storage (the sum of the
//! objects under `ws/{workspace}/`) and reports, and optionally repairs, the drift.

use crate::ingest::target::workspace_of_key;
use crate::state::{Quota, StateError};
use crate::storage::{ObjectStore, StorageError};
use std::collections::BTreeMap;

/// One workspace whose counter differed from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Workspace ID.
    pub workspace: String,
    /// The counter before reconcile.
    pub recorded: u64,
    /// Bytes actually in storage.
    pub actual: u64,
}

/// Why reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Listing storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading or writing counters failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Compares every counter with storage; with `apply`, overwrites the drifted counters.
pub async fn reconcile(
    store: &dyn ObjectStore,
    quota: &dyn Quota,
    apply: bool,
) -> Result<Vec<Drift>, ReconcileError> {
    let mut actual: BTreeMap<String, u64> = BTreeMap::new();
    for object in store.list("ws/").await? {
        if let Some(workspace) = workspace_of_key(&object.key) {
            *actual.entry(workspace.to_owned()).or_default() += object.size;
        }
    }
    for workspace in quota.workspaces().await? {
        actual.entry(workspace).or_default();
    }
    let mut drifts = Vec::new();
    for (workspace, bytes) in actual {
        let recorded = quota.used(&workspace).await?;
        if recorded != bytes {
            if apply {
                quota.set_used(&workspace, bytes).await?;
            }
            drifts.push(Drift {
                workspace,
                recorded,
                actual: bytes,
            });
        }
    }
    Ok(drifts)
}
