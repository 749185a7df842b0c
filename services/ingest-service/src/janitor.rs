//! The janitor: removes what interrupted or lost writes left in storage. Temp files and
//! abandoned multipart uploads go (see [`ObjectStore::sweep`]), and so do orphans: objects that
//! no image record names (a writer that crashed between writing its object and committing it,
//! or lost the compare-and-set and could not delete its object). Only objects older than a
//! grace period are touched, so another replica's upload in progress is never removed. The bytes
//! of asynchronous receipts go once their job is final (or was never queued).

use crate::ingest::{Kind, TargetRef};
use crate::state::{Catalog, StateError};
use crate::storage::{ObjectStore, StorageError};
use std::time::{Duration, SystemTime};

/// Why the janitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum JanitorError {
    /// Listing or deleting failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading records failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The workspace and the catalog key of the target an object key belongs to:
/// `ws/{workspace}/{kind}/{target}/{object}`.
pub fn target_of_object(key: &str) -> Option<(String, String)> {
    let mut parts = key.split('/');
    let (Some("ws"), Some(workspace), Some(dir), Some(id), Some(_), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let kind = Kind::from_dir(dir)?;
    let target = TargetRef {
        kind,
        id: id.to_owned(),
        workspace: workspace.to_owned(),
    };
    Some((workspace.to_owned(), target.catalog_key()))
}

/// True if `object` was last written at least `grace` before `now` (an object of unknown age
/// is never old enough).
fn older_than(object: &crate::storage::ObjectEntry, now: SystemTime, grace: Duration) -> bool {
    object
        .modified
        .and_then(|modified| now.duration_since(modified).ok())
        .is_some_and(|age| age >= grace)
}

/// Deletes every object older than `grace` that no image record names; returns their keys.
pub async fn remove_orphans(
    store: &dyn ObjectStore,
    catalog: &dyn Catalog,
    grace: Duration,
) -> Result<Vec<String>, JanitorError> {
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for object in store.list("ws/").await? {
        if !older_than(&object, now, grace) {
            continue;
        }
        let named = match target_of_object(&object.key) {
            Some((workspace, target)) => catalog
                .image(&workspace, &target)
                .await?
                .is_some_and(|record| record.key == object.key),
            None => false,
        };
        if !named {
            store.delete(&object.key).await?;
            removed.push(object.key);
        }
    }
    Ok(removed)
}

/// Deletes every job source (`jobs/{id}/source`) older than `grace` whose job is final or has
/// no record (its enqueue failed after the bytes were stored); returns their keys.
pub async fn remove_job_leftovers(
    store: &dyn ObjectStore,
    catalog: &dyn Catalog,
    grace: Duration,
) -> Result<Vec<String>, JanitorError> {
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for object in store.list(crate::ingest::JOB_PREFIX).await? {
        let Some(id) = object
            .key
            .strip_prefix(crate::ingest::JOB_PREFIX)
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        if !older_than(&object, now, grace) {
            continue;
        }
        let live = catalog
            .job(id)
            .await?
            .is_some_and(|job| !job.status.is_final());
        if !live {
            store.delete(&object.key).await?;
            removed.push(object.key);
        }
    }
    Ok(removed)
}

/// One janitor pass: leftovers of interrupted writes, then objects no record names, older than
/// `grace`. Returns how many of each were removed. Run by `ingest-service janitor` and by the
/// service's `Sweep` RPC.
pub async fn sweep(
    store: &dyn ObjectStore,
    catalog: &dyn Catalog,
    grace: Duration,
) -> Result<(usize, usize), JanitorError> {
    let leftovers = store.sweep(grace).await?;
    let orphans = remove_orphans(store, catalog, grace).await?;
    let sources = remove_job_leftovers(store, catalog, grace).await?;
    Ok((leftovers + sources.len(), orphans.len()))
}

#[cfg(test)]
mod tests {
    use super::target_of_object;

    #[test]
    fn an_object_key_names_its_target() {
        assert_eq!(
            target_of_object("ws/w1/receipts/abc/x.jpg"),
            Some(("w1".to_owned(), "RECEIPT:abc".to_owned()))
        );
        assert_eq!(
            target_of_object("ws/w1/workspace-expenses/e1/receipt-1-a.webp"),
            Some(("w1".to_owned(), "WORKSPACE_EXPENSE:w1/e1".to_owned()))
        );
        assert_eq!(
            target_of_object("ws/w2/reports/R1/x.pdf"),
            Some(("w2".to_owned(), "REPORT:R1".to_owned()))
        );
        assert_eq!(target_of_object("ws/w1/other/R1/x.pdf"), None);
        assert_eq!(target_of_object("ws/w1/receipts/a/b/c"), None);
    }
}
