//! Undo for half-done ingests: a guard that, unless disarmed, deletes the object it wrote and
//! releases the quota reservation it holds. A release that fails (the quota store is down) is
//! harmless: the reservation lapses by itself.

use crate::state::Quota;
use crate::storage::ObjectStore;
use std::sync::Arc;

/// Rolls back a reservation and a written object unless [`IngestGuard::disarm`] is called.
#[derive(Debug)]
pub struct IngestGuard {
    quota: Arc<dyn Quota>,
    store: Arc<dyn ObjectStore>,
    workspace: String,
    reservation: Option<String>,
    written: Option<String>,
}

impl IngestGuard {
    /// A guard for the reservation `reservation` (if any) of `workspace`.
    pub fn new(
        quota: Arc<dyn Quota>,
        store: Arc<dyn ObjectStore>,
        workspace: &str,
        reservation: Option<String>,
    ) -> Self {
        Self {
            quota,
            store,
            workspace: workspace.to_owned(),
            reservation,
            written: None,
        }
    }

    /// Records that `key` was written and must be deleted on rollback.
    pub fn wrote(&mut self, key: &str) {
        self.written = Some(key.to_owned());
    }

    /// Keeps everything: the ingest succeeded (its reservation became usage).
    pub fn disarm(mut self) {
        self.reservation = None;
        self.written = None;
    }

    /// Neither keeps nor undoes: for a commit whose outcome is unknown (the state store did not
    /// answer). The reservation lapses by itself; the object stays, committed or an orphan.
    pub fn abandon(mut self) {
        if let Some(key) = &self.written {
            tracing::warn!(%key, "commit outcome unknown; the object is kept, the reservation lapses");
        }
        self.reservation = None;
        self.written = None;
    }

    /// Undoes now, waiting for the undo to finish.
    pub async fn rollback(mut self) {
        let (reservation, written) = (self.reservation.take(), self.written.take());
        undo(
            self.quota.clone(),
            self.store.clone(),
            self.workspace.clone(),
            reservation,
            written,
        )
        .await;
    }
}

async fn undo(
    quota: Arc<dyn Quota>,
    store: Arc<dyn ObjectStore>,
    workspace: String,
    reservation: Option<String>,
    written: Option<String>,
) {
    if let Some(key) = written
        && let Err(err) = store.delete(&key).await
    {
        tracing::error!(%key, error = %err, "rollback could not delete object; it is an orphan");
    }
    if let Some(id) = reservation
        && let Err(err) = quota.release(&workspace, &id).await
    {
        tracing::warn!(%workspace, error = %err, "rollback could not release the reservation; it lapses by itself");
    }
}

impl Drop for IngestGuard {
    fn drop(&mut self) {
        if self.reservation.is_none() && self.written.is_none() {
            return;
        }
        // Dropped mid-flight (task cancelled): undo in the background.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(undo(
                self.quota.clone(),
                self.store.clone(),
                self.workspace.clone(),
                self.reservation.take(),
                self.written.take(),
            ));
        }
    }
}
