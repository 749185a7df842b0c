//! Embedded state for the default mode, in a redb database (a transactional B-tree store, see
//! `docs/state.md`): every change is one transaction, durable when it returns, costing
//! O(log n) in what is stored; all database work runs on the blocking pool. Locks are not
//! persisted: they only guard work in this process, which is the database's only user.
//!
//! A `state.json` left by an earlier version is migrated on first start (then renamed
//! `state.json.migrated`); a database that cannot be opened stops the start, naming the file.
//!
//! One file per concern: [`tables`] (the table layout), [`migrate`] (the JSON state of earlier
//! versions), [`quota`], [`catalog`] and [`locks`] (in memory).

mod catalog;
mod duplicates;
mod jobs;
mod locks;
mod migrate;
mod outbox;
mod quota;
mod sessions;
mod tables;
mod webhooks;

use super::StateError;
use locks::Locks;
use migrate::files;
use redb::{Database, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tables::IDEMPOTENCY;

/// Database-backed state for one process.
#[derive(Debug, Clone)]
pub struct EmbeddedState {
    db: Arc<Database>,
    locks: Arc<Mutex<Locks>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn failed(err: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(err.to_string())
}

fn data(err: impl std::fmt::Display) -> StateError {
    StateError::Data(err.to_string())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(data)
}

fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, StateError> {
    serde_json::from_str(json).map_err(data)
}

impl EmbeddedState {
    /// Opens (or creates) the database for `path` (a `.json` path names the database next to
    /// it, `state.redb`), migrating a legacy JSON state file if there is one. Fails, naming the
    /// file, if the database cannot be opened or is damaged.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let (db_path, legacy) = files(path.as_ref());
        if let Some(dir) = db_path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| {
                StateError::Unavailable(format!("creating {}: {err}", dir.display()))
            })?;
        }
        let fresh = !db_path.exists();
        let db = Database::create(&db_path).map_err(|err| {
            StateError::Data(format!(
                "the state database {} cannot be opened: {err}",
                db_path.display()
            ))
        })?;
        let state = EmbeddedState {
            db: Arc::new(db),
            locks: Arc::default(),
        };
        state.create_tables()?;
        if fresh && legacy.exists() {
            state.migrate(&legacy)?;
        }
        Ok(state)
    }

    /// How many idempotency results are stored (expired ones not yet removed included).
    pub async fn stored_idempotency_results(&self) -> Result<u64, StateError> {
        self.read(|txn| {
            txn.open_table(IDEMPOTENCY)
                .map_err(failed)?
                .len()
                .map_err(failed)
        })
        .await
    }

    /// The lock table, also after a panic elsewhere while it was held (every change to it is
    /// one step that leaves it whole).
    fn locks(&self) -> MutexGuard<'_, Locks> {
        self.locks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` in a write transaction on the blocking pool and commits it.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(failed)?;
            let result = work(&txn)?;
            txn.commit().map_err(failed)?;
            Ok(result)
        })
        .await
        .map_err(failed)?
    }

    /// Runs `work` in a read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(failed)?;
            work(&txn)
        })
        .await
        .map_err(failed)?
    }

    /// The JSON stored under `key` in `table`.
    async fn get_json<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: TableDefinition<'static, &'static str, &'static str>,
        key: &str,
    ) -> Result<Option<T>, StateError> {
        let key = key.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(table).map_err(failed)?;
            let found = table.get(key.as_str()).map_err(failed)?;
            found.map(|json| decode(json.value())).transpose()
        })
        .await
    }
}
