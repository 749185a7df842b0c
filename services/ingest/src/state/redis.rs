//! Redis state, on one server or a Redis Cluster: quota reservations (with an ID and an expiry)
//! and image records changed by Lua scripts, catalog records as JSON strings, locks as
//! `SET NX PX` with a token checked on release. The connection is lazy and reconnects by itself,
//! so a Redis outage fails calls (fail closed) until Redis is back.
//!
//! Key layout (`imaging:` is the configurable prefix). Everything a script touches is one
//! workspace's and carries the workspace as its hash tag, so a script's keys share a cluster
//! slot; the other keys are read and written one at a time:
//!
//! | key | holds |
//! |---|---|
//! | `imaging:{ws}:limit` | the workspace's byte limit |
//! | `imaging:{ws}:used` | bytes its committed records use |
//! | `imaging:{ws}:reservations` | hash: reservation ID -> `bytes:expiry_ms` |
//! | `imaging:{ws}:image:<target>` | JSON image record of a target of the workspace |
//! | `imaging:{ws}:owner:<hex(sub)>` | sorted set (all scores 0, byte order): a user's loose receipts, newest first |
//! | `imaging:target:<target>` | JSON target registration (workspace, owner) |
//! | `imaging:idem:<scope>` | JSON idempotency result, with a TTL |
//! | `imaging:lock:<name>` | lock token, with a TTL |
//! | `imaging:workspaces` | set of registered workspaces (reconcile) |
//! | `imaging:layout:version` | `2` once data of earlier versions has been moved |
//!
//! Data written by versions before this layout (`imaging:used:<ws>`, `imaging:image:<target>`,
//! ...) is moved by [`RedisState::migrate_layout`], which the service runs on start.

use super::{
    Catalog, IdempotencyRecord, ImageRecord, Listed, Listing, Quota, Registered, Reservation,
    StateError, Swap, Swapped, TargetRecord,
};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Value};
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

/// Reserves ARGV[1] bytes under the ID ARGV[3] in the hash KEYS[3] for ARGV[4] ms, unless the
/// usage KEYS[1] plus the live reservations plus the bytes pass the limit KEYS[2] (or ARGV[2]).
/// A live reservation with the same ID is granted again, uncharged. Returns {1, used + held}
/// or {0, used + held, limit}.
const RESERVE: &str = r#"
local now = now_ms()
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[2])
local held, mine = live(KEYS[3], now)
if mine[ARGV[3]] then
  return {1, used + held}
end
local bytes = tonumber(ARGV[1])
if used + held + bytes > limit then
  return {0, used + held, limit}
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1] .. ':' .. (now + tonumber(ARGV[4])))
return {1, used + held + bytes}
"#;

/// Compare-and-set of the image record KEYS[1]: only if its `key` field is ARGV[1] (or, with
/// ARGV[1] empty, if there is no record), sets it to ARGV[2] (deletes it if empty); turns the
/// reservation ARGV[4] of the hash KEYS[3] into usage KEYS[2] by ARGV[5] bytes (if it lapsed,
/// only if they still fit the limit KEYS[4] or ARGV[6]) and takes ARGV[3] bytes off the usage,
/// never below zero; adds (ARGV[7] = 'add') or removes ('remove') the entry ARGV[8] of the owner's
/// list KEYS[5]. Returns {1} if it changed, {0} on a conflict, {2, used, limit} if a lapsed
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
if ARGV[7] == 'add' then
  redis.call('ZADD', KEYS[5], 0, ARGV[8])
elseif ARGV[7] == 'remove' then
  redis.call('ZREM', KEYS[5], ARGV[8])
end
return {1}
"#;

/// Sets KEYS[1] to ARGV[2] only if it (0 if absent) is ARGV[1]; 1 if it changed.
const REPLACE_USED: &str = r#"
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"#;

/// Moves a counter of the earlier layout: adds KEYS[1] to KEYS[2] and deletes it.
const MIGRATE_COUNTER: &str = r#"
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('INCRBY', KEYS[2], value)
  redis.call('DEL', KEYS[1])
end
return 1
"#;

/// Moves a value of the earlier layout: KEYS[1] becomes KEYS[2] unless KEYS[2] exists (then
/// the newer value is kept); only if KEYS[1] still holds ARGV[1].
const MIGRATE_VALUE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'NX')
redis.call('DEL', KEYS[1])
return 1
"#;

/// Deletes KEYS[1] only if it still holds ARGV[1].
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Scheme of a Redis Cluster URL: `redis+cluster://host:port,host:port,...` (seed nodes; the
/// client discovers the rest).
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// How long a call may take to connect, and to be answered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to one server or to a cluster (which routes each command by its keys).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection manager that failed to reconnect while the server was down keeps that failure
/// for the next call, which then starts a new attempt: the first call after the server is back
/// would fail. A refused connection sent nothing, so that call is safely tried once more.
impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => Box::pin(async move {
                match connection.req_packed_command(cmd).await {
                    Err(err) if err.is_connection_refusal() => {
                        connection.req_packed_command(cmd).await
                    }
                    done => done,
                }
            }),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => Box::pin(async move {
                match connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
                {
                    Err(err) if err.is_connection_refusal() => {
                        connection
                            .req_packed_commands(pipeline, offset, count)
                            .await
                    }
                    done => done,
                }
            }),
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The seed nodes of a `redis+cluster://` URL as `redis://` URLs (credentials kept).
fn cluster_nodes(url: &str) -> Result<Vec<String>, StateError> {
    let rest = &url[CLUSTER_SCHEME.len()..];
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("redis://{credentials}{host}"))
        .collect();
    if nodes.is_empty() {
        return Err(StateError::Unavailable(
            "a redis+cluster:// URL names no node".to_owned(),
        ));
    }
    Ok(nodes)
}

/// Quota and catalog in Redis.
#[derive(Clone)]
pub struct RedisState {
    connection: Connection,
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
            .field(
                "cluster",
                &matches!(self.connection, Connection::Cluster(_)),
            )
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

/// The key layout this version writes, recorded in `imaging:layout:version` once data of
/// earlier versions has been moved.
const LAYOUT: &str = "2";

/// Concurrent single-key reads while scanning (reconcile, migration).
const SCAN_READS: usize = 64;

impl RedisState {
    /// Connects lazily to `url` (`redis://...` for one server, `redis+cluster://h:p,h:p` for a
    /// cluster); every key starts with `prefix`, which must not contain `{` or `}` (the
    /// workspace is each key's hash tag).
    pub fn new(url: &str, prefix: &str) -> Result<Self, StateError> {
        if prefix.contains(['{', '}']) {
            return Err(StateError::Unavailable(
                "the Redis key prefix must not contain { or }".to_owned(),
            ));
        }
        let connection = if url.starts_with(CLUSTER_SCHEME) {
            let client = redis::cluster::ClusterClient::builder(cluster_nodes(url)?)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(1)
                .build()
                .map_err(unavailable)?;
            let config = redis::cluster::ClusterConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(RESPONSE_TIMEOUT);
            Connection::Cluster(client.get_pending_async_connection_with_config(config))
        } else {
            let client = redis::Client::open(url).map_err(unavailable)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Connection::Single(
                ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?,
            )
        };
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            reserve: redis::Script::new(&format!("{HELPERS}{RESERVE}")),
            unlock: redis::Script::new(UNLOCK),
            swap_image: redis::Script::new(&format!("{HELPERS}{SWAP_IMAGE}")),
            replace_used: redis::Script::new(REPLACE_USED),
        })
    }

    /// A key of no workspace (read and written alone).
    fn key(&self, space: &str, name: &str) -> String {
        format!("{}{space}:{name}", self.prefix)
    }

    /// A key of `workspace`, in the workspace's cluster slot.
    fn ws_key(&self, workspace: &str, name: &str) -> String {
        format!("{}{{{workspace}}}:{name}", self.prefix)
    }

    fn image_key(&self, workspace: &str, target: &str) -> String {
        self.ws_key(workspace, &format!("image:{target}"))
    }

    /// The list of `owner`'s loose receipts in `workspace`.
    fn owner_key(&self, workspace: &str, owner: &str) -> String {
        self.ws_key(workspace, &format!("owner:{}", hex::encode(owner)))
    }

    fn workspaces_key(&self) -> String {
        format!("{}workspaces", self.prefix)
    }

    fn conn(&self) -> Connection {
        self.connection.clone()
    }

    async fn get_string(&self, key: String) -> Result<Option<String>, StateError> {
        self.conn().get(key).await.map_err(unavailable)
    }

    /// Every key matching `pattern`, on every primary of a cluster.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StateError> {
        let nodes = match &self.connection {
            Connection::Single(_) => vec![None],
            Connection::Cluster(connection) => primaries(connection.clone())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let mut all = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = match (&self.connection, &node) {
                    (Connection::Cluster(connection), Some((host, port))) => connection
                        .clone()
                        .route_command(
                            scan,
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                host: host.clone(),
                                port: *port,
                            }),
                        )
                        .await
                        .map_err(unavailable)?,
                    _ => scan
                        .query_async(&mut self.conn())
                        .await
                        .map_err(unavailable)?,
                };
                let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                    .map_err(|err| StateError::Data(err.to_string()))?;
                all.extend(keys);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Moves data written by earlier versions (keys without the workspace hash tag) to this
    /// layout; returns how many keys moved. Each move is one script on one server, so it is
    /// safe to repeat or to interrupt. Earlier versions ran on a single server only; a cluster
    /// holds no such keys (migrate a single server before importing its data into a cluster).
    pub async fn migrate_layout(&self) -> Result<usize, StateError> {
        if matches!(self.connection, Connection::Cluster(_)) {
            return Ok(0);
        }
        let marker = self.key("layout", "version");
        if self.get_string(marker.clone()).await?.as_deref() == Some(LAYOUT) {
            return Ok(0);
        }
        let counter = redis::Script::new(MIGRATE_COUNTER);
        let value = redis::Script::new(MIGRATE_VALUE);
        let mut moved = 0;
        for old in self.scan(&format!("{}used:*", self.prefix)).await? {
            let workspace = &old[self.key("used", "").len()..];
            let _: u64 = counter
                .key(&old)
                .key(self.ws_key(workspace, "used"))
                .invoke_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            moved += 1;
        }
        for old in self.scan(&format!("{}limit:*", self.prefix)).await? {
            let workspace = old[self.key("limit", "").len()..].to_owned();
            if let Some(limit) = self.get_string(old.clone()).await? {
                let _: u64 = value
                    .key(&old)
                    .key(self.ws_key(&workspace, "limit"))
                    .arg(limit)
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(unavailable)?;
                let _: u64 = self
                    .conn()
                    .sadd(self.workspaces_key(), &workspace)
                    .await
                    .map_err(unavailable)?;
                moved += 1;
            }
        }
        for old in self.scan(&format!("{}image:*", self.prefix)).await? {
            let target = &old[self.key("image", "").len()..];
            let Some(json) = self.get_string(old.clone()).await? else {
                continue;
            };
            let Some(record) = decode::<ImageRecord>(Some(json.clone()))? else {
                continue;
            };
            let _: u64 = value
                .key(&old)
                .key(self.image_key(&record.workspace, target))
                .arg(json)
                .invoke_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            moved += 1;
        }
        // Reservations of the earlier layout had no identity and are not carried over; the
        // set of workspaces is rebuilt from the limits above.
        for old in [
            self.scan(&format!("{}reservations:*", self.prefix)).await?,
            vec![self.key("workspaces", "all")],
        ]
        .concat()
        {
            let removed: u64 = self.conn().del(&old).await.map_err(unavailable)?;
            moved += usize::try_from(removed).unwrap_or(0);
        }
        let _: () = self.conn().set(marker, LAYOUT).await.map_err(unavailable)?;
        Ok(moved)
    }
}

/// The addresses of a cluster's primaries (from `CLUSTER NODES`).
async fn primaries(mut connection: ClusterConnection) -> Result<Vec<(String, u16)>, StateError> {
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(unavailable)?;
    let text: String =
        redis::from_redis_value(reply).map_err(|err| StateError::Data(err.to_string()))?;
    Ok(parse_primaries(&text))
}

/// Primaries of a `CLUSTER NODES` reply: `<id> <host:port@bus[,hostname]> <flags> ...`.
fn parse_primaries(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
                return None;
            }
            let address = address.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
        })
        .collect()
}

#[async_trait]
impl Quota for RedisState {
    async fn set_limit(&self, workspace: &str, limit: u64) -> Result<(), StateError> {
        // The set first: a workspace listed without a limit is harmless, the reverse would
        // hide it from reconcile.
        let _: u64 = self
            .conn()
            .sadd(self.workspaces_key(), workspace)
            .await
            .map_err(unavailable)?;
        self.conn()
            .set(self.ws_key(workspace, "limit"), limit)
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(name = "redis.limit", skip_all, fields(workspace = %workspace))]
    async fn limit(&self, workspace: &str) -> Result<Option<u64>, StateError> {
        self.conn()
            .get(self.ws_key(workspace, "limit"))
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(name = "redis.used", skip_all, fields(workspace = %workspace))]
    async fn used(&self, workspace: &str) -> Result<u64, StateError> {
        let used: Option<u64> = self
            .conn()
            .get(self.ws_key(workspace, "used"))
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
            .key(self.ws_key(workspace, "used"))
            .key(self.ws_key(workspace, "limit"))
            .key(self.ws_key(workspace, "reservations"))
            .arg(bytes)
            .arg(default_limit)
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
            .hdel(self.ws_key(workspace, "reservations"), id)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn replace_used(
        &self,
        workspace: &str,
        expected: u64,
        bytes: u64,
    ) -> Result<bool, StateError> {
        let changed: u64 = self
            .replace_used
            .key(self.ws_key(workspace, "used"))
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
            .smembers(self.workspaces_key())
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
    async fn image(&self, workspace: &str, key: &str) -> Result<Option<ImageRecord>, StateError> {
        decode(self.get_string(self.image_key(workspace, key)).await?)
    }

    #[tracing::instrument(name = "redis.swap_image", skip_all, fields(key = %swap.key))]
    async fn swap_image(&self, swap: &Swap<'_>) -> Result<Swapped, StateError> {
        let json = swap.image.map(encode).transpose()?.unwrap_or_default();
        let (reservation, grow) = swap.reservation.unwrap_or(("", 0));
        let (op, owner, entry) = match swap.listing {
            None => ("", "", ""),
            Some(Listing::Add { owner, entry }) => ("add", owner, entry),
            Some(Listing::Remove { owner, entry }) => ("remove", owner, entry),
        };
        let reply: Vec<u64> = self
            .swap_image
            .key(self.image_key(swap.workspace, swap.key))
            .key(self.ws_key(swap.workspace, "used"))
            .key(self.ws_key(swap.workspace, "reservations"))
            .key(self.ws_key(swap.workspace, "limit"))
            .key(self.owner_key(swap.workspace, owner))
            .arg(swap.expected.unwrap_or_default())
            .arg(json)
            .arg(swap.release)
            .arg(reservation)
            .arg(grow)
            .arg(swap.default_limit)
            .arg(op)
            .arg(entry)
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
        let keys = self.scan(&format!("{}{{*}}:image:*", self.prefix)).await?;
        let values: Vec<Option<String>> = futures::stream::iter(keys)
            .map(|key| self.get_string(key))
            .buffered(SCAN_READS)
            .try_collect()
            .await?;
        values
            .into_iter()
            .filter_map(|value| decode(value).transpose())
            .collect()
    }

    #[tracing::instrument(name = "redis.listed", skip_all)]
    async fn listed(
        &self,
        workspace: &str,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let start = after.map_or_else(|| "-".to_owned(), |entry| format!("({entry}"));
        redis::cmd("ZRANGE")
            .arg(self.owner_key(workspace, owner))
            .arg(start)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn listings(&self) -> Result<Vec<Listed>, StateError> {
        let mut all = Vec::new();
        for key in self.scan(&format!("{}{{*}}:owner:*", self.prefix)).await? {
            let Some((workspace, owner)) = key[self.prefix.len()..]
                .strip_prefix('{')
                .and_then(|rest| rest.split_once("}:owner:"))
                .and_then(|(workspace, owner)| {
                    let owner = String::from_utf8(hex::decode(owner).ok()?).ok()?;
                    Some((workspace.to_owned(), owner))
                })
            else {
                continue;
            };
            let entries: Vec<String> =
                self.conn().zrange(&key, 0, -1).await.map_err(unavailable)?;
            all.extend(entries.into_iter().map(|entry| Listed {
                workspace: workspace.clone(),
                owner: owner.clone(),
                entry,
            }));
        }
        all.sort();
        Ok(all)
    }

    async fn set_listed(&self, listed: &Listed, present: bool) -> Result<(), StateError> {
        let key = self.owner_key(&listed.workspace, &listed.owner);
        let _: u64 = if present {
            self.conn().zadd(key, &listed.entry, 0).await
        } else {
            self.conn().zrem(key, &listed.entry).await
        }
        .map_err(unavailable)?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::{cluster_nodes, parse_primaries};

    #[test]
    fn a_cluster_url_names_its_seed_nodes_with_their_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/").unwrap(),
            vec!["redis://u:p@10.0.0.1:7000", "redis://u:p@10.0.0.2:7001"]
        );
        assert!(cluster_nodes("redis+cluster://").is_err());
    }

    #[test]
    fn primaries_are_read_from_cluster_nodes_and_failed_or_replica_nodes_left_out() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001,host master - 0 0 2 connected 5461-10922\n\
                    c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected\n\
                    d4 127.0.0.1:7003@17003 master,fail - 0 0 3 connected\n\
                    e5 :0@0 master,noaddr - 0 0 0 disconnected\n";
        assert_eq!(
            parse_primaries(text),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }
}
