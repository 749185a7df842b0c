//! The service's memory budget: every upload reserves what it may cost before it spends it
//! (its received bytes as they arrive, then what its pipeline step needs), so the total stays
//! under a configured ceiling whatever the mix of uploads. An upload that cannot get its share
//! waits briefly, then is refused with `OVERLOADED`; one that could never fit is refused as too
//! complex.

use crate::error::IngestError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits are KiB.
const UNIT: u64 = 1024;

/// The budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total: u64,
    wait: Duration,
}

/// A reservation; dropping it gives the bytes back.
#[derive(Debug, Default)]
pub struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl Reserved {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds `other` to this reservation.
    pub fn merge(&mut self, other: Reserved) {
        self.bytes += other.bytes;
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl MemoryBudget {
    /// A budget of `bytes`, where a reservation waits at most `wait` for room.
    pub fn new(bytes: u64, wait: Duration) -> Self {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX) / 2);
        MemoryBudget {
            permits: Arc::new(Semaphore::new(usize::try_from(units).unwrap_or(usize::MAX))),
            total: units * UNIT,
            wait,
        }
    }

    /// Reserves `bytes`, waiting up to the configured time for room.
    pub async fn reserve(&self, bytes: u64) -> Result<Reserved, IngestError> {
        if bytes > self.total {
            return Err(IngestError::TooComplex {
                what: "memory budget",
            });
        }
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        let acquire = self.permits.clone().acquire_many_owned(units);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => Ok(Reserved {
                permit: Some(permit),
                bytes,
            }),
            Ok(Err(_)) => Err(IngestError::ShuttingDown),
            Err(_) => Err(IngestError::Overloaded),
        }
    }

    /// Bytes free now.
    #[cfg(test)]
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_wait_briefly_then_shed_and_give_back_what_they_held() {
        let budget = MemoryBudget::new(10 * 1024 * 1024, Duration::from_millis(50));
        let mut held = budget.reserve(6 * 1024 * 1024).await.unwrap();
        held.merge(budget.reserve(3 * 1024 * 1024).await.unwrap());
        assert_eq!(held.bytes(), 9 * 1024 * 1024);
        assert!(matches!(
            budget.reserve(2 * 1024 * 1024).await,
            Err(IngestError::Overloaded)
        ));
        assert!(matches!(
            budget.reserve(11 * 1024 * 1024).await,
            Err(IngestError::TooComplex { .. })
        ));
        drop(held);
        assert_eq!(budget.available(), 10 * 1024 * 1024);
    }
}
