//! Locks of the embedded backend: in memory (they only guard work in this process, the
//! database's only user). Expired locks are removed as the table grows, so a process that takes
//! many distinct locks (an idempotency claim per key) holds only the live ones and a bounded
//! number of expired ones.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Held locks by name: the holder's token and when the lock expires.
#[derive(Debug, Default)]
pub(super) struct Locks {
    held: HashMap<String, (String, Instant)>,
    /// The size at which expired locks are removed next: twice the live ones after the last
    /// removal, so removal costs O(1) per lock taken.
    purge_at: usize,
}

/// Expired locks are not removed below this many entries.
const MIN_PURGE: usize = 64;

impl Locks {
    /// Takes `name` for `ttl` from `now` if it is free or expired; the new holder's token.
    pub(super) fn try_lock(&mut self, name: &str, ttl: Duration, now: Instant) -> Option<String> {
        if let Some((_, expires)) = self.held.get(name)
            && *expires > now
        {
            return None;
        }
        if self.held.len() >= self.purge_at.max(MIN_PURGE) {
            self.held.retain(|_, (_, expires)| *expires > now);
            self.purge_at = self.held.len() * 2;
        }
        let token = uuid::Uuid::new_v4().to_string();
        self.held
            .insert(name.to_owned(), (token.clone(), now + ttl));
        Some(token)
    }

    /// Releases `name` if `token` still holds it.
    pub(super) fn unlock(&mut self, name: &str, token: &str) {
        if self.held.get(name).is_some_and(|(held, _)| held == token) {
            self.held.remove(name);
        }
    }

    /// Entries held, expired ones not yet removed included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_until_released_or_expired() {
        let mut locks = Locks::default();
        let now = Instant::now();
        let token = locks.try_lock("a", Duration::from_secs(10), now).unwrap();
        assert!(locks.try_lock("a", Duration::from_secs(10), now).is_none());
        locks.unlock("a", "not the holder");
        assert!(locks.try_lock("a", Duration::from_secs(10), now).is_none());
        locks.unlock("a", &token);
        let again = locks.try_lock("a", Duration::from_secs(10), now).unwrap();
        let later = now + Duration::from_secs(11);
        assert!(
            locks
                .try_lock("a", Duration::from_secs(10), later)
                .is_some(),
            "expired"
        );
        assert_ne!(token, again);
    }

    #[test]
    fn expired_locks_do_not_pile_up() {
        let mut locks = Locks::default();
        let start = Instant::now();
        // 100,000 distinct claims of one second each, taken one per millisecond: at most about
        // a thousand are live at once.
        for n in 0..100_000u64 {
            let now = start + Duration::from_millis(n);
            locks
                .try_lock(&format!("idem:{n}"), Duration::from_secs(1), now)
                .unwrap();
            assert!(
                locks.len() <= 2 * 1001 + MIN_PURGE,
                "{} held at {n}",
                locks.len()
            );
        }
    }
}
