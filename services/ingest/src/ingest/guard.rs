//! Undo for half-done ingests: a guard that, unless disarmed, deletes the object it wrote and
//! releases the quota it reserved, and a target lock that is released however the work ends.

use crate::error::IngestError;
use crate::state::{Catalog, Quota};
use crate::storage::ObjectStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A held catalog lock, released on [`TargetLock::release`] or, failing that, on drop.
#[derive(Debug)]
pub struct TargetLock {
    catalog: Arc<dyn Catalog>,
    name: String,
    token: Option<String>,
}

/// How long a lock is held at most if its holder dies.
const LOCK_TTL: Duration = Duration::from_secs(60);

impl TargetLock {
    /// Waits up to `wait` for the lock `name`.
    pub async fn acquire(
        catalog: Arc<dyn Catalog>,
        name: String,
        wait: Duration,
    ) -> Result<Self, IngestError> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(token) = catalog.try_lock(&name, LOCK_TTL).await? {
                return Ok(Self {
                    catalog,
                    name,
                    token: Some(token),
                });
            }
            if Instant::now() >= deadline {
                return Err(IngestError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Releases the lock.
    pub async fn release(mut self) {
        if let Some(token) = self.token.take()
            && let Err(err) = self.catalog.unlock(&self.name, &token).await
        {
            tracing::warn!(lock = %self.name, error = %err, "unlock failed; the lock expires by itself");
        }
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        if let Some(token) = self.token.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let catalog = self.catalog.clone();
            let name = std::mem::take(&mut self.name);
            runtime.spawn(async move {
                let _ = catalog.unlock(&name, &token).await;
            });
        }
    }
}
