//! Per-target locks in the catalog: writes to one target are serialised across instances, and a
//! held lock is released however the work ends.

use crate::error::IngestError;
use crate::state::Catalog;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a lock is waited for and held at most.
#[derive(Debug, Clone, Copy)]
pub struct LockTiming {
    /// Wait for a busy lock this long, then `BUSY`.
    pub wait: Duration,
    /// A held lock expires after this even if its holder never releases it (it died, or was
    /// paused). For a target lock (`with_lock`) an expiry costs a retry, never data: records
    /// change only by compare-and-set. An idempotency claim is a lock whose expiry is what it
    /// stands for: it lives as long as the key's result ([`super::idempotency::IDEMPOTENCY_TTL`]),
    /// so a key runs at most once in that time.
    pub ttl: Duration,
}

/// Runs `work` while holding the lock `name` (waiting for it as `timing` says), then releases
/// it, whatever `work` returned. A target lock only keeps writers from wasting work on
/// conflicts; the compare-and-set commit decides.
pub async fn with_lock<T>(
    catalog: &Arc<dyn Catalog>,
    name: String,
    timing: LockTiming,
    work: impl Future<Output = Result<T, IngestError>>,
) -> Result<T, IngestError> {
    let lock = TargetLock::acquire(catalog.clone(), name, timing).await?;
    let result = work.await;
    lock.release().await;
    result
}

/// A held catalog lock, released on [`TargetLock::release`] or, failing that, on drop.
#[derive(Debug)]
pub struct TargetLock {
    catalog: Arc<dyn Catalog>,
    name: String,
    token: Option<String>,
}

impl TargetLock {
    /// Waits as `timing` says for the lock `name`.
    pub async fn acquire(
        catalog: Arc<dyn Catalog>,
        name: String,
        timing: LockTiming,
    ) -> Result<Self, IngestError> {
        let deadline = Instant::now() + timing.wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(token) = catalog.try_lock(&name, timing.ttl).await? {
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

    /// Leaves the lock held until it expires (a claim that must outlive this holder).
    pub fn keep(mut self) {
        self.token = None;
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
