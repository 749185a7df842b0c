//! Embedded state for the default mode: everything in memory behind one mutex, persisted to a
//! JSON file (temp file + rename) after every change so it survives a restart. Locks are not
//! persisted: they only guard work in this process.

use super::{
    Catalog, IdempotencyRecord, ImageRecord, Quota, Registered, Reservation, StateError,
    TargetRecord,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    limits: BTreeMap<String, u64>,
    used: BTreeMap<String, u64>,
    targets: BTreeMap<String, TargetRecord>,
    images: BTreeMap<String, ImageRecord>,
    /// Idempotency results with their expiry (Unix seconds).
    idempotency: BTreeMap<String, (IdempotencyRecord, u64)>,
}

/// File-backed state for one process.
#[derive(Debug)]
pub struct EmbeddedState {
    path: PathBuf,
    data: Mutex<Data>,
    locks: Mutex<HashMap<String, (String, Instant)>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl EmbeddedState {
    /// Opens (or creates) the state file at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        let data = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|err| StateError::Data(err.to_string()))?
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Data::default(),
            Err(err) => return Err(StateError::Unavailable(err.to_string())),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| StateError::Unavailable(err.to_string()))?;
        }
        Ok(Self {
            path,
            data: Mutex::new(data),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `change` on the data and persists the result; nothing is kept if persisting fails.
    fn update<T>(&self, change: impl FnOnce(&mut Data) -> T) -> Result<T, StateError> {
        let mut data = self.data.lock().map_err(poisoned)?;
        let before = serde_json::to_vec(&*data).map_err(|err| StateError::Data(err.to_string()))?;
        let result = change(&mut data);
        let after = serde_json::to_vec(&*data).map_err(|err| StateError::Data(err.to_string()))?;
        if after != before
            && let Err(err) = self.persist(&after)
        {
            *data = serde_json::from_slice(&before).map_err(|e| StateError::Data(e.to_string()))?;
            return Err(err);
        }
        Ok(result)
    }

    fn read<T>(&self, look: impl FnOnce(&Data) -> T) -> Result<T, StateError> {
        let data = self.data.lock().map_err(poisoned)?;
        Ok(look(&data))
    }

    fn persist(&self, bytes: &[u8]) -> Result<(), StateError> {
        let temp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)
        };
        write().map_err(|err| StateError::Unavailable(err.to_string()))
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StateError {
    StateError::Unavailable("state lock poisoned".to_owned())
}

#[async_trait]
impl Quota for EmbeddedState {
    async fn set_limit(&self, workspace: &str, limit: u64) -> Result<(), StateError> {
        self.update(|d| {
            d.limits.insert(workspace.to_owned(), limit);
        })
    }

    async fn limit(&self, workspace: &str) -> Result<Option<u64>, StateError> {
        self.read(|d| d.limits.get(workspace).copied())
    }

    async fn used(&self, workspace: &str) -> Result<u64, StateError> {
        self.read(|d| d.used.get(workspace).copied().unwrap_or(0))
    }

    async fn reserve(
        &self,
        workspace: &str,
        bytes: u64,
        default_limit: u64,
    ) -> Result<Reservation, StateError> {
        self.update(|d| {
            let limit = d.limits.get(workspace).copied().unwrap_or(default_limit);
            let used = d.used.get(workspace).copied().unwrap_or(0);
            if used.saturating_add(bytes) > limit {
                return Reservation::Exceeded { limit, used };
            }
            d.used.insert(workspace.to_owned(), used + bytes);
            Reservation::Granted { used: used + bytes }
        })
    }

    async fn release(&self, workspace: &str, bytes: u64) -> Result<(), StateError> {
        self.update(|d| {
            let used = d.used.entry(workspace.to_owned()).or_insert(0);
            *used = used.saturating_sub(bytes);
        })
    }

    async fn set_used(&self, workspace: &str, bytes: u64) -> Result<u64, StateError> {
        self.update(|d| d.used.insert(workspace.to_owned(), bytes).unwrap_or(0))
    }

    async fn workspaces(&self) -> Result<Vec<String>, StateError> {
        self.read(|d| {
            let mut all: Vec<String> = d.limits.keys().chain(d.used.keys()).cloned().collect();
            all.sort();
            all.dedup();
            all
        })
    }

    async fn check(&self) -> Result<(), StateError> {
        self.read(|_| ())
    }
}

#[async_trait]
impl Catalog for EmbeddedState {
    async fn put_target(&self, key: &str, target: &TargetRecord) -> Result<Registered, StateError> {
        self.update(|d| match d.targets.get(key) {
            None => {
                d.targets.insert(key.to_owned(), target.clone());
                Registered::Created
            }
            Some(existing) if existing == target => Registered::Unchanged,
            Some(existing) => Registered::Conflict(existing.clone()),
        })
    }

    async fn target(&self, key: &str) -> Result<Option<TargetRecord>, StateError> {
        self.read(|d| d.targets.get(key).cloned())
    }

    async fn remove_target(&self, key: &str) -> Result<bool, StateError> {
        self.update(|d| d.targets.remove(key).is_some())
    }

    async fn image(&self, key: &str) -> Result<Option<ImageRecord>, StateError> {
        self.read(|d| d.images.get(key).cloned())
    }

    async fn put_image(&self, key: &str, image: &ImageRecord) -> Result<(), StateError> {
        self.update(|d| {
            d.images.insert(key.to_owned(), image.clone());
        })
    }

    async fn take_image(&self, key: &str) -> Result<Option<ImageRecord>, StateError> {
        self.update(|d| d.images.remove(key))
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StateError> {
        let now = now_secs();
        self.read(|d| {
            d.idempotency
                .get(key)
                .filter(|(_, expires)| *expires > now)
                .map(|(record, _)| record.clone())
        })
    }

    async fn put_idempotency(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let now = now_secs();
        self.update(|d| {
            d.idempotency.retain(|_, (_, expires)| *expires > now);
            d.idempotency
                .insert(key.to_owned(), (record.clone(), now + ttl.as_secs()));
        })
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, StateError> {
        let mut locks = self.locks.lock().map_err(poisoned)?;
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
        let mut locks = self.locks.lock().map_err(poisoned)?;
        if locks.get(name).is_some_and(|(held, _)| held == token) {
            locks.remove(name);
        }
        Ok(())
    }
}
