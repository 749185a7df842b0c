//! Quotas: limits, usage and reservations, each change one transaction.

use super::tables::{LIMITS, RESERVATIONS, USED, counter};
use super::{EmbeddedState, failed};
use crate::state::{Quota, Reservation, StateError, now_millis};
use async_trait::async_trait;
use redb::ReadableTable;
use std::time::Duration;

/// The live reservations of `workspace`: their total, and whether `id` is one of them. Lapsed
/// ones are deleted on the way. Workspace IDs have no `/`, so `{workspace}/` prefixes only its
/// own keys.
pub(super) fn live_reservations(
    txn: &redb::WriteTransaction,
    workspace: &str,
    id: &str,
    now: u64,
) -> Result<(u64, bool), StateError> {
    let mut table = txn.open_table(RESERVATIONS).map_err(failed)?;
    let start = format!("{workspace}/");
    let end = format!("{workspace}0");
    let mut held = 0;
    let mut mine = false;
    let mut lapsed = Vec::new();
    for entry in table.range(start.as_str()..end.as_str()).map_err(failed)? {
        let (key, value) = entry.map_err(failed)?;
        let (bytes, expiry) = value.value();
        if expiry <= now {
            lapsed.push(key.value().to_owned());
        } else {
            held += bytes;
            mine |= key.value().strip_prefix(start.as_str()) == Some(id);
        }
    }
    for key in lapsed {
        table.remove(key.as_str()).map_err(failed)?;
    }
    Ok((held, mine))
}

#[async_trait]
impl Quota for EmbeddedState {
    async fn set_limit(&self, workspace: &str, limit: u64) -> Result<(), StateError> {
        let workspace = workspace.to_owned();
        self.write(move |txn| {
            let mut limits = txn.open_table(LIMITS).map_err(failed)?;
            limits.insert(workspace.as_str(), limit).map_err(failed)?;
            Ok(())
        })
        .await
    }

    async fn limit(&self, workspace: &str) -> Result<Option<u64>, StateError> {
        let workspace = workspace.to_owned();
        self.read(move |txn| counter(&txn.open_table(LIMITS).map_err(failed)?, &workspace))
            .await
    }

    async fn used(&self, workspace: &str) -> Result<u64, StateError> {
        let workspace = workspace.to_owned();
        self.read(move |txn| {
            Ok(counter(&txn.open_table(USED).map_err(failed)?, &workspace)?.unwrap_or(0))
        })
        .await
    }

    async fn reserve(
        &self,
        workspace: &str,
        id: &str,
        bytes: u64,
        ttl: Duration,
        default_limit: u64,
    ) -> Result<Reservation, StateError> {
        let workspace = workspace.to_owned();
        let id = id.to_owned();
        self.write(move |txn| {
            let now = now_millis();
            let limit = counter(&txn.open_table(LIMITS).map_err(failed)?, &workspace)?
                .unwrap_or(default_limit);
            let used = counter(&txn.open_table(USED).map_err(failed)?, &workspace)?.unwrap_or(0);
            let (held, mine) = live_reservations(txn, &workspace, &id, now)?;
            if mine {
                return Ok(Reservation::Granted { used: used + held });
            }
            if used.saturating_add(held).saturating_add(bytes) > limit {
                return Ok(Reservation::Exceeded {
                    limit,
                    used: used + held,
                });
            }
            let expiry = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            let key = format!("{workspace}/{id}");
            txn.open_table(RESERVATIONS)
                .map_err(failed)?
                .insert(key.as_str(), (bytes, expiry))
                .map_err(failed)?;
            Ok(Reservation::Granted {
                used: used + held + bytes,
            })
        })
        .await
    }

    async fn release(&self, workspace: &str, id: &str) -> Result<(), StateError> {
        let key = format!("{workspace}/{id}");
        self.write(move |txn| {
            txn.open_table(RESERVATIONS)
                .map_err(failed)?
                .remove(key.as_str())
                .map_err(failed)?;
            Ok(())
        })
        .await
    }

    async fn replace_used(
        &self,
        workspace: &str,
        expected: u64,
        bytes: u64,
    ) -> Result<bool, StateError> {
        let workspace = workspace.to_owned();
        self.write(move |txn| {
            let mut used_table = txn.open_table(USED).map_err(failed)?;
            if counter(&used_table, &workspace)?.unwrap_or(0) != expected {
                return Ok(false);
            }
            used_table
                .insert(workspace.as_str(), bytes)
                .map_err(failed)?;
            Ok(true)
        })
        .await
    }

    async fn workspaces(&self) -> Result<Vec<String>, StateError> {
        self.read(move |txn| {
            let mut all = Vec::new();
            for table in [LIMITS, USED] {
                let table = txn.open_table(table).map_err(failed)?;
                for entry in table.iter().map_err(failed)? {
                    let (key, _) = entry.map_err(failed)?;
                    all.push(key.value().to_owned());
                }
            }
            all.sort();
            all.dedup();
            Ok(all)
        })
        .await
    }

    async fn check(&self) -> Result<(), StateError> {
        self.read(|_| Ok(())).await
    }
}
