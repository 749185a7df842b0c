//! The JSON state file of earlier versions, copied into the database once.

use super::tables::{
    IDEMPOTENCY, IDEMPOTENCY_EXPIRY, IMAGES, LIMITS, OWNER_LISTS, TARGETS, USED, list_prefix,
};
use super::{EmbeddedState, encode, failed};
use crate::state::{IdempotencyRecord, ImageRecord, StateError, TargetRecord};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The database file for a configured `path`, and the JSON state an earlier version kept there.
pub(super) fn files(path: &Path) -> (PathBuf, PathBuf) {
    if path.extension().is_some_and(|ext| ext == "json") {
        (path.with_extension("redb"), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.with_file_name("state.json"))
    }
}

/// The JSON state of earlier versions.
#[derive(Debug, Default, Deserialize)]
struct LegacyData {
    #[serde(default)]
    limits: BTreeMap<String, u64>,
    #[serde(default)]
    used: BTreeMap<String, u64>,
    #[serde(default)]
    targets: BTreeMap<String, TargetRecord>,
    #[serde(default)]
    images: BTreeMap<String, ImageRecord>,
    #[serde(default)]
    idempotency: BTreeMap<String, (IdempotencyRecord, u64)>,
}

impl EmbeddedState {
    /// Copies a legacy `state.json` into the database in one transaction, then renames it.
    pub(super) fn migrate(&self, legacy: &Path) -> Result<(), StateError> {
        let bytes = std::fs::read(legacy).map_err(failed)?;
        let old: LegacyData = serde_json::from_slice(&bytes).map_err(|err| {
            StateError::Data(format!(
                "the legacy state {} is unreadable: {err}",
                legacy.display()
            ))
        })?;
        let txn = self.db.begin_write().map_err(failed)?;
        {
            let mut limits = txn.open_table(LIMITS).map_err(failed)?;
            for (ws, limit) in &old.limits {
                limits.insert(ws.as_str(), limit).map_err(failed)?;
            }
            let mut used = txn.open_table(USED).map_err(failed)?;
            for (ws, bytes) in &old.used {
                used.insert(ws.as_str(), bytes).map_err(failed)?;
            }
            let mut targets = txn.open_table(TARGETS).map_err(failed)?;
            for (key, record) in &old.targets {
                targets
                    .insert(key.as_str(), encode(record)?.as_str())
                    .map_err(failed)?;
            }
            let mut images = txn.open_table(IMAGES).map_err(failed)?;
            let mut lists = txn.open_table(OWNER_LISTS).map_err(failed)?;
            for (key, record) in &old.images {
                images
                    .insert(key.as_str(), encode(record)?.as_str())
                    .map_err(failed)?;
                if let Some(entry) = &record.listed {
                    let listed = list_prefix(&record.workspace, &record.owner) + entry;
                    lists.insert(listed.as_str(), ()).map_err(failed)?;
                }
            }
            let mut idempotency = txn.open_table(IDEMPOTENCY).map_err(failed)?;
            let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(failed)?;
            for (key, (record, expires)) in &old.idempotency {
                idempotency
                    .insert(key.as_str(), (*expires, encode(record)?.as_str()))
                    .map_err(failed)?;
                expiry
                    .insert((*expires, key.as_str()), ())
                    .map_err(failed)?;
            }
        }
        txn.commit().map_err(failed)?;
        let done = legacy.with_extension("json.migrated");
        std::fs::rename(legacy, &done).map_err(failed)?;
        tracing::info!(from = %legacy.display(), "migrated the JSON state into the database");
        Ok(())
    }
}
