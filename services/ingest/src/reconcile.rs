//! Reconcile: recomputes every workspace's usage from the image records (what committed
//! uploads use; an object no record names is an orphan, removed by the janitor and never
//! charged) and reports, and optionally repairs, the drift. A repair is a compare-and-set on the
//! usage read before the records were summed, so a commit made meanwhile is never overwritten
//! (that workspace is reported as changed and left for the next run).

use crate::state::{Catalog, Quota, StateError};
use std::collections::BTreeMap;

/// One workspace whose counter differed from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Workspace ID.
    pub workspace: String,
    /// The counter before reconcile.
    pub recorded: u64,
    /// Bytes the records use.
    pub actual: u64,
    /// Whether the counter was repaired (false in a dry run, or if it changed meanwhile).
    pub repaired: bool,
}

/// Why reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading or writing records or counters failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Compares every counter with the records; with `apply`, repairs the drifted ones.
pub async fn reconcile(
    quota: &dyn Quota,
    catalog: &dyn Catalog,
    apply: bool,
) -> Result<Vec<Drift>, ReconcileError> {
    let mut before: BTreeMap<String, u64> = BTreeMap::new();
    for workspace in quota.workspaces().await? {
        let used = quota.used(&workspace).await?;
        before.insert(workspace, used);
    }
    let mut actual: BTreeMap<String, u64> = BTreeMap::new();
    for record in catalog.images().await? {
        *actual.entry(record.workspace).or_default() += record.size;
    }
    for workspace in actual.keys() {
        if !before.contains_key(workspace) {
            let used = quota.used(workspace).await?;
            before.insert(workspace.clone(), used);
        }
    }
    let mut drifts = Vec::new();
    for (workspace, recorded) in before {
        let bytes = actual.get(&workspace).copied().unwrap_or(0);
        if recorded != bytes {
            let repaired = apply && quota.replace_used(&workspace, recorded, bytes).await?;
            drifts.push(Drift {
                workspace,
                recorded,
                actual: bytes,
                repaired,
            });
        }
    }
    Ok(drifts)
}
