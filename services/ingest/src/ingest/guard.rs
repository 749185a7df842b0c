//! Undo for half-done ingests: a guard that, unless disarmed, deletes the object it wrote and
//! releases the quota it reserved.

use crate::state::Quota;
use crate::storage::ObjectStore;
use std::sync::Arc;

/// Rolls back a reservation and a written object unless [`IngestGuard::disarm`] is called.
#[derive(Debug)]
pub struct IngestGuard {
    quota: Arc<dyn Quota>,
    store: Arc<dyn ObjectStore>,
    workspace: String,
    reserved: u64,
    written: Option<String>,
}

impl IngestGuard {
    /// A guard for `reserved` bytes already reserved in `workspace`.
    pub fn new(
        quota: Arc<dyn Quota>,
        store: Arc<dyn ObjectStore>,
        workspace: &str,
        reserved: u64,
    ) -> Self {
        Self {
            quota,
            store,
            workspace: workspace.to_owned(),
            reserved,
            written: None,
        }
    }

    /// Records that `key` was written and must be deleted on rollback.
    pub fn wrote(&mut self, key: &str) {
        self.written = Some(key.to_owned());
    }

    /// Keeps everything: the ingest succeeded.
    pub fn disarm(mut self) {
        self.reserved = 0;
        self.written = None;
    }

    /// Undoes now, waiting for the undo to finish.
    pub async fn rollback(mut self) {
        let (reserved, written) = (self.reserved, self.written.take());
        self.reserved = 0;
        undo(
            self.quota.clone(),
            self.store.clone(),
            self.workspace.clone(),
            reserved,
            written,
        )
        .await;
    }
}

async fn undo(
    quota: Arc<dyn Quota>,
    store: Arc<dyn ObjectStore>,
    workspace: String,
    reserved: u64,
    written: Option<String>,
) {
    if let Some(key) = written
        && let Err(err) = store.delete(&key).await
    {
        tracing::error!(%key, error = %err, "rollback could not delete object; reconcile will count it");
    }
    if reserved > 0
        && let Err(err) = quota.release(&workspace, reserved).await
    {
        tracing::error!(%workspace, reserved, error = %err, "rollback could not release quota; reconcile will fix it");
    }
}

impl Drop for IngestGuard {
    fn drop(&mut self) {
        if self.reserved == 0 && self.written.is_none() {
            return;
        }
        // Dropped mid-flight (task cancelled): undo in the background.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(undo(
                self.quota.clone(),
                self.store.clone(),
                self.workspace.clone(),
                self.reserved,
                self.written.take(),
            ));
        }
    }
}
