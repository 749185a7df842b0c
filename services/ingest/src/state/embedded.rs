//! Embedded state for the default mode, in a redb database (a transactional B-tree store, see
//! `docs/state.md`): every change is one transaction, durable when it returns, costing
//! O(log n) in what is stored; all database work runs on the blocking pool. Locks are not
//! persisted: they only guard work in this process, which is the database's only user.
//!
//! A `state.json` left by an earlier version is migrated on first start (then renamed
//! `state.json.migrated`); a database that cannot be opened stops the start, naming the file.

use super::{
    Catalog, IdempotencyRecord, ImageRecord, Listed, Listing, Quota, Registered, Reservation,
    StateError, Swap, Swapped, TargetRecord, now_millis,
};
use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Workspace -> byte limit.
const LIMITS: TableDefinition<&str, u64> = TableDefinition::new("limits");
/// Workspace -> bytes used.
const USED: TableDefinition<&str, u64> = TableDefinition::new("used");
/// Target key -> JSON `TargetRecord`.
const TARGETS: TableDefinition<&str, &str> = TableDefinition::new("targets");
/// Target key -> JSON `ImageRecord`.
const IMAGES: TableDefinition<&str, &str> = TableDefinition::new("images");
/// Idempotency scope -> (expiry in Unix seconds, JSON `IdempotencyRecord`).
const IDEMPOTENCY: TableDefinition<&str, (u64, &str)> = TableDefinition::new("idempotency");
/// (expiry in Unix seconds, idempotency scope): the results in the order they expire, so that
/// expired ones are removed a few at a time without a scan.
const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// Expired idempotency results removed by each new one (more than one: the table shrinks back
/// after a burst).
const IDEMPOTENCY_SWEEP: usize = 16;
/// `{workspace}/{hex(owner)}/{entry}`: the owners' lists of loose receipts, in byte order
/// (newest first within an owner, see `listing_entry`).
const OWNER_LISTS: TableDefinition<&str, ()> = TableDefinition::new("owner_lists");

/// The key prefix of `owner`'s list in `workspace`; workspace IDs have no `/`, hex has none.
fn list_prefix(workspace: &str, owner: &str) -> String {
    format!("{workspace}/{}/", hex::encode(owner))
}

/// `{workspace}/{id}` -> (bytes, expiry in Unix ms) of a live quota reservation.
const RESERVATIONS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("reservations");

/// The live reservations of `workspace`: their total, and whether `id` is one of them. Lapsed
/// ones are deleted on the way. Workspace IDs have no `/`, so `{workspace}/` prefixes only its
/// own keys.
fn live_reservations(
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

/// Database-backed state for one process.
#[derive(Debug, Clone)]
pub struct EmbeddedState {
    db: Arc<Database>,
    locks: Arc<Mutex<HashMap<String, (String, Instant)>>>,
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

/// The database file for a configured `path`, and the JSON state an earlier version kept there.
fn files(path: &Path) -> (PathBuf, PathBuf) {
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

    fn create_tables(&self) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(failed)?;
        txn.open_table(LIMITS).map_err(failed)?;
        txn.open_table(USED).map_err(failed)?;
        txn.open_table(TARGETS).map_err(failed)?;
        txn.open_table(IMAGES).map_err(failed)?;
        txn.open_table(RESERVATIONS).map_err(failed)?;
        txn.open_table(OWNER_LISTS).map_err(failed)?;
        {
            // Results stored before the expiry index existed are indexed once.
            let results = txn.open_table(IDEMPOTENCY).map_err(failed)?;
            let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(failed)?;
            if expiry.is_empty().map_err(failed)? {
                for entry in results.iter().map_err(failed)? {
                    let (scope, value) = entry.map_err(failed)?;
                    let (expires, _) = value.value();
                    expiry
                        .insert((expires, scope.value()), ())
                        .map_err(failed)?;
                }
            }
        }
        txn.commit().map_err(failed)
    }

    /// Copies a legacy `state.json` into the database in one transaction, then renames it.
    fn migrate(&self, legacy: &Path) -> Result<(), StateError> {
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

fn counter(
    table: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<Option<u64>, StateError> {
    Ok(table.get(key).map_err(failed)?.map(|value| value.value()))
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

    async fn set_used(&self, workspace: &str, bytes: u64) -> Result<u64, StateError> {
        let workspace = workspace.to_owned();
        self.write(move |txn| {
            let mut used_table = txn.open_table(USED).map_err(failed)?;
            let previous = used_table
                .insert(workspace.as_str(), bytes)
                .map_err(failed)?
                .map(|value| value.value());
            Ok(previous.unwrap_or(0))
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

#[async_trait]
impl Catalog for EmbeddedState {
    async fn put_target(&self, key: &str, target: &TargetRecord) -> Result<Registered, StateError> {
        let key = key.to_owned();
        let target = target.clone();
        self.write(move |txn| {
            let mut targets = txn.open_table(TARGETS).map_err(failed)?;
            let existing: Option<TargetRecord> = targets
                .get(key.as_str())
                .map_err(failed)?
                .map(|json| decode(json.value()))
                .transpose()?;
            Ok(match existing {
                None => {
                    targets
                        .insert(key.as_str(), encode(&target)?.as_str())
                        .map_err(failed)?;
                    Registered::Created
                }
                Some(existing) if existing == target => Registered::Unchanged,
                Some(existing) => Registered::Conflict(existing),
            })
        })
        .await
    }

    async fn target(&self, key: &str) -> Result<Option<TargetRecord>, StateError> {
        self.get_json(TARGETS, key).await
    }

    async fn remove_target(&self, key: &str) -> Result<bool, StateError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut targets = txn.open_table(TARGETS).map_err(failed)?;
            Ok(targets.remove(key.as_str()).map_err(failed)?.is_some())
        })
        .await
    }

    async fn image(&self, workspace: &str, key: &str) -> Result<Option<ImageRecord>, StateError> {
        let record: Option<ImageRecord> = self.get_json(IMAGES, key).await?;
        Ok(record.filter(|record| record.workspace == workspace))
    }

    async fn swap_image(&self, swap: &Swap<'_>) -> Result<Swapped, StateError> {
        let key = swap.key.to_owned();
        let expected = swap.expected.map(str::to_owned);
        let json = swap.image.map(encode).transpose()?;
        let workspace = swap.workspace.to_owned();
        let release = swap.release;
        let reservation = swap.reservation.map(|(id, bytes)| (id.to_owned(), bytes));
        let default_limit = swap.default_limit;
        let listing = swap.listing.map(|listing| match listing {
            Listing::Add { owner, entry } => (true, list_prefix(&workspace, owner) + entry),
            Listing::Remove { owner, entry } => (false, list_prefix(&workspace, owner) + entry),
        });
        self.write(move |txn| {
            let mut images = txn.open_table(IMAGES).map_err(failed)?;
            let current: Option<ImageRecord> = images
                .get(key.as_str())
                .map_err(failed)?
                .map(|json| decode(json.value()))
                .transpose()?;
            if current.map(|record| record.key) != expected {
                return Ok(Swapped::Conflict);
            }
            let mut used_table = txn.open_table(USED).map_err(failed)?;
            let used = counter(&used_table, &workspace)?.unwrap_or(0);
            let mut grow = 0;
            if let Some((id, bytes)) = &reservation {
                grow = *bytes;
                let (held, mine) = live_reservations(txn, &workspace, id, now_millis())?;
                if !mine {
                    let limit = counter(&txn.open_table(LIMITS).map_err(failed)?, &workspace)?
                        .unwrap_or(default_limit);
                    if used.saturating_add(held).saturating_add(grow) > limit {
                        return Ok(Swapped::QuotaExceeded {
                            limit,
                            used: used + held,
                        });
                    }
                }
                txn.open_table(RESERVATIONS)
                    .map_err(failed)?
                    .remove(format!("{workspace}/{id}").as_str())
                    .map_err(failed)?;
            }
            match &json {
                Some(json) => {
                    images.insert(key.as_str(), json.as_str()).map_err(failed)?;
                }
                None => {
                    images.remove(key.as_str()).map_err(failed)?;
                }
            }
            used_table
                .insert(
                    workspace.as_str(),
                    used.saturating_add(grow).saturating_sub(release),
                )
                .map_err(failed)?;
            if let Some((add, key)) = &listing {
                let mut lists = txn.open_table(OWNER_LISTS).map_err(failed)?;
                if *add {
                    lists.insert(key.as_str(), ()).map_err(failed)?;
                } else {
                    lists.remove(key.as_str()).map_err(failed)?;
                }
            }
            Ok(Swapped::Done)
        })
        .await
    }

    async fn images(&self) -> Result<Vec<ImageRecord>, StateError> {
        self.read(move |txn| {
            let table = txn.open_table(IMAGES).map_err(failed)?;
            let mut all = Vec::new();
            for entry in table.iter().map_err(failed)? {
                let (_, json) = entry.map_err(failed)?;
                all.push(decode(json.value())?);
            }
            Ok(all)
        })
        .await
    }

    async fn listed(
        &self,
        workspace: &str,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let prefix = list_prefix(workspace, owner);
        let start = format!("{prefix}{}", after.unwrap_or_default());
        let end = format!("{}0", &prefix[..prefix.len() - 1]);
        let skip = after.is_some();
        self.read(move |txn| {
            let table = txn.open_table(OWNER_LISTS).map_err(failed)?;
            let mut out = Vec::with_capacity(limit);
            for entry in table.range(start.as_str()..end.as_str()).map_err(failed)? {
                let (key, _) = entry.map_err(failed)?;
                let key = key.value();
                if skip && key == start {
                    continue;
                }
                if out.len() == limit {
                    break;
                }
                out.push(key[prefix.len()..].to_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn listings(&self) -> Result<Vec<Listed>, StateError> {
        self.read(|txn| {
            let table = txn.open_table(OWNER_LISTS).map_err(failed)?;
            let mut all = Vec::new();
            for entry in table.iter().map_err(failed)? {
                let (key, _) = entry.map_err(failed)?;
                let mut parts = key.value().splitn(3, '/');
                let (Some(workspace), Some(owner), Some(entry)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Some(owner) = hex::decode(owner)
                    .ok()
                    .and_then(|owner| String::from_utf8(owner).ok())
                else {
                    continue;
                };
                all.push(Listed {
                    workspace: workspace.to_owned(),
                    owner,
                    entry: entry.to_owned(),
                });
            }
            Ok(all)
        })
        .await
    }

    async fn set_listed(&self, listed: &Listed, present: bool) -> Result<(), StateError> {
        let key = list_prefix(&listed.workspace, &listed.owner) + &listed.entry;
        self.write(move |txn| {
            let mut table = txn.open_table(OWNER_LISTS).map_err(failed)?;
            if present {
                table.insert(key.as_str(), ()).map_err(failed)?;
            } else {
                table.remove(key.as_str()).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StateError> {
        let key = key.to_owned();
        let now = now_secs();
        self.read(move |txn| {
            let table = txn.open_table(IDEMPOTENCY).map_err(failed)?;
            let found = table.get(key.as_str()).map_err(failed)?;
            match found {
                Some(entry) => {
                    let (expires, json) = entry.value();
                    if expires > now {
                        decode(json).map(Some)
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_idempotency(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let key = key.to_owned();
        let json = encode(record)?;
        let now = now_secs();
        let expires = now + ttl.as_secs();
        self.write(move |txn| {
            let mut table = txn.open_table(IDEMPOTENCY).map_err(failed)?;
            let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(failed)?;
            let previous = table
                .insert(key.as_str(), (expires, json.as_str()))
                .map_err(failed)?
                .map(|old| old.value().0);
            if let Some(old) = previous {
                expiry.remove((old, key.as_str())).map_err(failed)?;
            }
            expiry.insert((expires, key.as_str()), ()).map_err(failed)?;
            // A few expired results go with each new one: the table holds the live ones.
            let mut expired = Vec::new();
            for entry in expiry
                .range(..(now, ""))
                .map_err(failed)?
                .take(IDEMPOTENCY_SWEEP)
            {
                let (index, _) = entry.map_err(failed)?;
                let (at, scope) = index.value();
                expired.push((at, scope.to_owned()));
            }
            for (at, scope) in expired {
                expiry.remove((at, scope.as_str())).map_err(failed)?;
                table.remove(scope.as_str()).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, StateError> {
        let mut locks = self
            .locks
            .lock()
            .map_err(|_| failed("lock table poisoned"))?;
        let now = Instant::now();
        if let Some((_, expires)) = locks.get(name)
            && *expires > now
        {
            return Ok(None);
        }
        let token = uuid::Uuid::new_v4().to_string();
        locks.insert(name.to_owned(), (token.clone(), now + ttl));
        Ok(Some(token))
    }

    async fn unlock(&self, name: &str, token: &str) -> Result<(), StateError> {
        let mut locks = self
            .locks
            .lock()
            .map_err(|_| failed("lock table poisoned"))?;
        if locks.get(name).is_some_and(|(held, _)| held == token) {
            locks.remove(name);
        }
        Ok(())
    }
}
