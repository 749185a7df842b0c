//! Who may upload now: a global cap on uploads in flight (load shedding, no queue), and caps per
//! user and per workspace so that one client, or one tenant, cannot take every slot. A slot is
//! taken only once the upload's header has passed its checks, and given back when the upload
//! ends, however it ends.

use crate::error::IngestError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The caps.
#[derive(Debug, Clone)]
pub struct Admission {
    global: Arc<Semaphore>,
    per_user: usize,
    per_workspace: usize,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Uploads in flight per (workspace, user).
    users: HashMap<(String, String), usize>,
    /// Uploads in flight per workspace.
    workspaces: HashMap<String, usize>,
}

/// An admitted upload's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    counts: Arc<Mutex<Counts>>,
    user: (String, String),
}

impl Admission {
    /// `global` uploads at once in all, at most `per_user` of one user and `per_workspace` of
    /// one workspace.
    pub fn new(global: usize, per_user: usize, per_workspace: usize) -> Self {
        Admission {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_user: per_user.max(1),
            per_workspace: per_workspace.max(1),
            counts: Arc::default(),
        }
    }

    /// Admits one upload of `user` in `workspace`, or refuses at once: `SHUTTING_DOWN` while
    /// draining, `OVERLOADED` at the global cap, `TOO_MANY_UPLOADS` at the caller's own caps.
    pub fn admit(&self, workspace: &str, user: &str) -> Result<Admitted, IngestError> {
        let permit = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|err| match err {
                TryAcquireError::Closed => IngestError::ShuttingDown,
                TryAcquireError::NoPermits => IngestError::Overloaded,
            })?;
        let user = (workspace.to_owned(), user.to_owned());
        let mut counts = lock(&self.counts);
        let of_user = counts.users.get(&user).copied().unwrap_or(0);
        let of_workspace = counts.workspaces.get(workspace).copied().unwrap_or(0);
        if of_user >= self.per_user {
            return Err(IngestError::TooManyUploads("user"));
        }
        if of_workspace >= self.per_workspace {
            return Err(IngestError::TooManyUploads("workspace"));
        }
        *counts.users.entry(user.clone()).or_default() += 1;
        *counts.workspaces.entry(workspace.to_owned()).or_default() += 1;
        drop(counts);
        Ok(Admitted {
            _permit: permit,
            counts: self.counts.clone(),
            user,
        })
    }

    /// Refuses every new upload from now on (uploads already admitted go on).
    pub fn close(&self) {
        self.global.close();
    }

    /// True once [`Admission::close`] was called (the process is draining).
    pub fn is_closed(&self) -> bool {
        self.global.is_closed()
    }
}

/// The counts, also after a panic elsewhere while they were held: every change to them is one
/// step that leaves them whole, so a poisoned lock still guards true counts, and taking it keeps
/// every slot returnable (refusing it would keep a user's slots taken for good).
fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.users.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.users.remove(&self.user);
            }
        }
        if let Some(count) = counts.workspaces.get_mut(&self.user.0) {
            *count -= 1;
            if *count == 0 {
                counts.workspaces.remove(&self.user.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_cannot_take_every_slot_and_slots_come_back_when_dropped() {
        let admission = Admission::new(10, 2, 3);
        let a1 = admission.admit("w1", "u1").unwrap();
        let _a2 = admission.admit("w1", "u1").unwrap();
        assert!(matches!(
            admission.admit("w1", "u1"),
            Err(IngestError::TooManyUploads("user"))
        ));
        let _b1 = admission.admit("w1", "u2").unwrap();
        assert!(matches!(
            admission.admit("w1", "u3"),
            Err(IngestError::TooManyUploads("workspace"))
        ));
        assert!(
            admission.admit("w2", "u1").is_ok(),
            "another workspace is not held up"
        );
        drop(a1);
        assert!(admission.admit("w1", "u1").is_ok());
    }

    #[test]
    fn slots_come_back_after_a_panic_while_the_counts_were_held() {
        let admission = Admission::new(10, 1, 5);
        let held = admission.admit("w1", "u1").unwrap();
        let counts = admission.counts.clone();
        let _ = std::thread::spawn(move || {
            let _guard = counts.lock().unwrap();
            panic!("a panic while the counts are held");
        })
        .join();
        assert!(admission.counts.is_poisoned());
        drop(held);
        assert!(admission.admit("w1", "u1").is_ok(), "the slot came back");
    }

    #[test]
    fn the_global_cap_sheds_and_a_closed_admission_says_it_is_shutting_down() {
        let admission = Admission::new(1, 5, 5);
        let held = admission.admit("w1", "u1").unwrap();
        assert!(matches!(
            admission.admit("w2", "u2"),
            Err(IngestError::Overloaded)
        ));
        drop(held);
        admission.close();
        assert!(matches!(
            admission.admit("w2", "u2"),
            Err(IngestError::ShuttingDown)
        ));
    }
}
