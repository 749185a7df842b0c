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

/// What [`reconcile_listings`] found (and, applied, repaired) in the owners' lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingRepairs {
    /// Receipts missing from their owner's list (or written before lists existed).
    pub added: usize,
    /// List entries naming no receipt.
    pub removed: usize,
}

/// Makes the owners' lists of loose receipts name exactly the receipts there are: a receipt
/// missing from its list is put back (one written before lists existed is given an entry, by
/// compare-and-set on its record, listed after every newer receipt), and an entry whose receipt
/// is gone is removed after checking the record again. With `apply` false it only counts.
pub async fn reconcile_listings(
    catalog: &dyn Catalog,
    apply: bool,
) -> Result<ListingRepairs, ReconcileError> {
    use crate::state::{Listed, Listing, Swap, listing_entry, listing_image};
    use std::collections::BTreeSet;
    let listed: BTreeSet<Listed> = catalog.listings().await?.into_iter().collect();
    let mut wanted = BTreeSet::new();
    let mut repairs = ListingRepairs::default();
    for record in catalog.images().await? {
        let Some((_, target)) = crate::janitor::target_of_object(&record.key) else {
            continue;
        };
        if target.split(':').next() != Some(crate::ingest::Kind::Receipt.name()) {
            continue;
        }
        match &record.listed {
            Some(entry) => {
                let entry = Listed {
                    workspace: record.workspace.clone(),
                    owner: record.owner.clone(),
                    entry: entry.clone(),
                };
                if !listed.contains(&entry) {
                    repairs.added += 1;
                    if apply {
                        catalog.set_listed(&entry, true).await?;
                    }
                }
                wanted.insert(entry);
            }
            None => {
                repairs.added += 1;
                if apply {
                    let entry = listing_entry(0, &record.image_id);
                    let mut updated = record.clone();
                    updated.listed = Some(entry.clone());
                    catalog
                        .swap_image(&Swap {
                            key: &target,
                            expected: Some(&record.key),
                            image: Some(&updated),
                            workspace: &record.workspace,
                            release: 0,
                            reservation: None,
                            default_limit: 0,
                            listing: Some(Listing::Add {
                                owner: &record.owner,
                                entry: &entry,
                            }),
                            // A repair of the owner's list, not a change of the image.
                            event: None,
                            index: None,
                            unindex: None,
                            refuse_exact: false,
                        })
                        .await?;
                }
            }
        }
    }
    for entry in listed.difference(&wanted) {
        let key = listing_image(&entry.entry).map(|id| format!("RECEIPT:{id}"));
        // A receipt committed since the records were read keeps its entry.
        let current = match &key {
            Some(key) => catalog.image(&entry.workspace, key).await?,
            None => None,
        };
        if current.is_some_and(|record| record.listed.as_deref() == Some(entry.entry.as_str())) {
            continue;
        }
        repairs.removed += 1;
        if apply {
            catalog.set_listed(entry, false).await?;
        }
    }
    Ok(repairs)
}
