//! Redis state: quota reservations (with an ID and an expiry) and image records changed by Lua
//! scripts, catalog records as JSON strings, locks as `SET NX PX` with a token checked on
//! release. The connection is lazy and
//! reconnects by itself, so a Redis outage fails calls (fail closed) until Redis is back.

use super::{
    Catalog, IdempotencyRecord, ImageRecord, Quota, Registered, Reservation, StateError, Swap,
    Swapped, TargetRecord,
};
use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Lua helpers shared by the scripts: the server's clock in ms, and the live reservations of a
/// workspace's hash (`id -> "bytes:expiry_ms"`), lapsed ones deleted on the way.
const HELPERS: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live(hash, now)
  local held, mine = 0, {}
  local entries = redis.call('HGETALL', hash)
  for i = 1, #entries, 2 do
    local bytes, expiry = string.match(entries[i + 1], '^(%d+):(%d+)$')
    if bytes == nil or tonumber(expiry) <= now then
      redis.call('HDEL', hash, entries[i])
    else
      held = held + tonumber(bytes)
      mine[entries[i]] = tonumber(bytes)
    end
  end
  return held, mine
end
"#;

/// Reserves ARGV[1] bytes under the ID ARGV[4] in the hash KEYS[3] for ARGV[5] ms, unless the
/// usage KEYS[1] plus the live reservations plus the bytes pass the limit KEYS[2] (or ARGV[2]).
/// A live reservation with the same ID is granted again, uncharged. Remembers the workspace
/// ARGV[3] in KEYS[4]. Returns {1, used + held} or {0, used + held, limit}.
const RESERVE: &str = r#"
local now = now_ms()
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[2])
local held, mine = live(KEYS[3], now)
if mine[ARGV[4]] then
  return {1, used + held}
end
local bytes = tonumber(ARGV[1])
if used + held + bytes > limit then
  return {0, used + held, limit}
end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[1] .. ':' .. (now + tonumber(ARGV[5])))
redis.call('SADD', KEYS[4], ARGV[3])
return {1, used + held + bytes}
"#;

/// Compare-and-set of the image record KEYS[1]: only if its `key` field is ARGV[1] (or, with
/// ARGV[1] empty, if there is no record), sets it to ARGV[2] (deletes it if empty); turns the
/// reservation ARGV[4] of the hash KEYS[3] into usage KEYS[2] by ARGV[5] bytes (if it lapsed,
/// only if they still fit the limit KEYS[4] or ARGV[6]) and takes ARGV[3] bytes off the usage,
/// never below zero. Returns {1} if it changed, {0} on a conflict, {2, used, limit} if a lapsed
/// reservation no longer fits.
const SWAP_IMAGE: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  if cjson.decode(current)['key'] ~= ARGV[1] then return {0} end
elseif ARGV[1] ~= '' then
  return {0}
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local grow = tonumber(ARGV[5])
if grow > 0 then
  local held, mine = live(KEYS[3], now_ms())
  if not mine[ARGV[4]] then
    local limit = tonumber(redis.call('GET', KEYS[4]) or ARGV[6])
    if used + held + grow > limit then return {2, used + held, limit} end
  end
  redis.call('HDEL', KEYS[3], ARGV[4])
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
local left = used + grow - tonumber(ARGV[3])
if left < 0 then left = 0 end
redis.call('SET', KEYS[2], left)
return {1}
"#;

/// Sets KEYS[1] to ARGV[2] only if it (0 if absent) is ARGV[1]; 1 if it changed.
const REPLACE_USED: &str = r#"
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"#;

/// Deletes KEYS[1] only if it still holds ARGV[1].
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Quota and catalog in Redis.
#[derive(Clone)]
pub struct RedisState {
    connection: ConnectionManager,
    prefix: String,
    reserve: redis::Script,
    unlock: redis::Script,
    swap_image: redis::Script,
    replace_used: redis::Script,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn unavailable(err: redis::RedisError) -> StateError {
    StateError::Unavailable(err.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(raw: Option<String>) -> Result<Option<T>, StateError> {
    raw.map(|json| serde_json::from_str(&json).map_err(|err| StateError::Data(err.to_string())))
        .transpose()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|err| StateError::Data(err.to_string()))
}

impl RedisState {
    /// Connects lazily to `url`; every key starts with `prefix`.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StateError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            reserve: redis::Script::new(&format!("{HELPERS}{RESERVE}")),
            unlock: redis::Script::new(UNLOCK),
            swap_image: redis::Script::new(&format!("{HELPERS}{SWAP_IMAGE}")),
            replace_used: redis::Script::new(REPLACE_USED),
        })
    }

    fn key(&self, space: &str, name: &str) -> String {
        format!("{}{space}:{name}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.connection.clone()
    }

    async fn get_string(&self, key: String) -> Result<Option<String>, StateError> {
        self.conn().get(key).await.map_err(unavailable)
    }
}

#[async_trait]
impl Quota for RedisState {
    async fn set_limit(&self, workspace: &str, limit: u64) -> Result<(), StateError> {
        redis::pipe()
            .atomic()
            .set(self.key("limit", workspace), limit)
            .sadd(self.key("workspaces", "all"), workspace)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(name = "redis.limit", skip_all, fields(workspace = %workspace))]
    async fn limit(&self, workspace: &str) -> Result<Option<u64>, StateError> {
        self.conn()
            .get(self.key("limit", workspace))
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(name = "redis.used", skip_all, fields(workspace = %workspace))]
    async fn used(&self, workspace: &str) -> Result<u64, StateError> {
        let used: Option<u64> = self
            .conn()
            .get(self.key("used", workspace))
            .await
            .map_err(unavailable)?;
        Ok(used.unwrap_or(0))
    }

    #[tracing::instrument(name = "redis.reserve", skip_all, fields(workspace = %workspace))]
    async fn reserve(
        &self,
        workspace: &str,
        id: &str,
        bytes: u64,
        ttl: Duration,
        default_limit: u64,
    ) -> Result<Reservation, StateError> {
        let reply: Vec<u64> = self
            .reserve
            .key(self.key("used", workspace))
            .key(self.key("limit", workspace))
            .key(self.key("reservations", workspace))
            .key(self.key("workspaces", "all"))
            .arg(bytes)
            .arg(default_limit)
            .arg(workspace)
            .arg(id)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [1, used] => Ok(Reservation::Granted { used: *used }),
            [0, used, limit] => Ok(Reservation::Exceeded {
                limit: *limit,
                used: *used,
            }),
            other => Err(StateError::Data(format!(
                "unexpected reserve reply {other:?}"
            ))),
        }
    }

    #[tracing::instrument(name = "redis.release", skip_all, fields(workspace = %workspace))]
    async fn release(&self, workspace: &str, id: &str) -> Result<(), StateError> {
        let _: u64 = self
            .conn()
            .hdel(self.key("reservations", workspace), id)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn set_used(&self, workspace: &str, bytes: u64) -> Result<u64, StateError> {
        let previous: Option<u64> = self
            .conn()
            .set_options(
                self.key("used", workspace),
                bytes,
                redis::SetOptions::default().get(true),
            )
            .await
            .map_err(unavailable)?;
        let _: u64 = self
            .conn()
            .sadd(self.key("workspaces", "all"), workspace)
            .await
            .map_err(unavailable)?;
        Ok(previous.unwrap_or(0))
    }

    async fn replace_used(
        &self,
        workspace: &str,
        expected: u64,
        bytes: u64,
    ) -> Result<bool, StateError> {
        let changed: u64 = self
            .replace_used
            .key(self.key("used", workspace))
            .arg(expected)
            .arg(bytes)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }

    async fn workspaces(&self) -> Result<Vec<String>, StateError> {
        let mut all: Vec<String> = self
            .conn()
            .smembers(self.key("workspaces", "all"))
            .await
            .map_err(unavailable)?;
        all.sort();
        Ok(all)
    }

    async fn check(&self) -> Result<(), StateError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Catalog for RedisState {
    async fn put_target(&self, key: &str, target: &TargetRecord) -> Result<Registered, StateError> {
        // SET NX GET: sets only if absent, and answers what was there (Redis 7).
        let previous: Option<String> = self
            .conn()
            .set_options(
                self.key("target", key),
                encode(target)?,
                redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .get(true),
            )
            .await
            .map_err(unavailable)?;
        Ok(match decode::<TargetRecord>(previous)? {
            None => Registered::Created,
            Some(existing) if &existing == target => Registered::Unchanged,
            Some(existing) => Registered::Conflict(existing),
        })
    }

    #[tracing::instrument(name = "redis.target", skip_all, fields(key = %key))]
    async fn target(&self, key: &str) -> Result<Option<TargetRecord>, StateError> {
        decode(self.get_string(self.key("target", key)).await?)
    }

    async fn remove_target(&self, key: &str) -> Result<bool, StateError> {
        let removed: u64 = self
            .conn()
            .del(self.key("target", key))
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }

    #[tracing::instrument(name = "redis.image", skip_all, fields(key = %key))]
    async fn image(&self, key: &str) -> Result<Option<ImageRecord>, StateError> {
        decode(self.get_string(self.key("image", key)).await?)
    }

    #[tracing::instrument(name = "redis.swap_image", skip_all, fields(key = %swap.key))]
    async fn swap_image(&self, swap: &Swap<'_>) -> Result<Swapped, StateError> {
        let json = swap.image.map(encode).transpose()?.unwrap_or_default();
        let (reservation, grow) = swap.reservation.unwrap_or(("", 0));
        let reply: Vec<u64> = self
            .swap_image
            .key(self.key("image", swap.key))
            .key(self.key("used", swap.workspace))
            .key(self.key("reservations", swap.workspace))
            .key(self.key("limit", swap.workspace))
            .arg(swap.expected.unwrap_or_default())
            .arg(json)
            .arg(swap.release)
            .arg(reservation)
            .arg(grow)
            .arg(swap.default_limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [1] => Ok(Swapped::Done),
            [0] => Ok(Swapped::Conflict),
            [2, used, limit] => Ok(Swapped::QuotaExceeded {
                limit: *limit,
                used: *used,
            }),
            other => Err(StateError::Data(format!("unexpected swap reply {other:?}"))),
        }
    }

    async fn images(&self) -> Result<Vec<ImageRecord>, StateError> {
        let pattern = format!("{}image:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut all = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(unavailable)?;
                for value in values {
                    if let Some(record) = decode(value)? {
                        all.push(record);
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(all);
            }
        }
    }

    #[tracing::instrument(name = "redis.idempotency", skip_all, fields(key = %key))]
    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StateError> {
        decode(self.get_string(self.key("idem", key)).await?)
    }

    async fn put_idempotency(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        ttl: Duration,
    ) -> Result<(), StateError> {
        self.conn()
            .set_ex(self.key("idem", key), encode(record)?, ttl.as_secs().max(1))
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(name = "redis.try_lock", skip_all, fields(name = %name))]
    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, StateError> {
        let token = uuid::Uuid::new_v4().to_string();
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = self
            .conn()
            .set_options(
                self.key("lock", name),
                &token,
                redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::PX(millis)),
            )
            .await
            .map_err(unavailable)?;
        Ok(set.map(|_| token))
    }

    #[tracing::instrument(name = "redis.unlock", skip_all, fields(name = %name))]
    async fn unlock(&self, name: &str, token: &str) -> Result<(), StateError> {
        let _: u64 = self
            .unlock
            .key(self.key("lock", name))
            .arg(token)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
