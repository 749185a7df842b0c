//! Redis state, on one server or a Redis Cluster: quota reservations (with an ID and an expiry)
//! and image records changed by Lua scripts, catalog records as JSON strings, locks as
//! `SET NX PX` with a token checked on release. The connection is lazy and reconnects by itself,
//! so a Redis outage fails calls (fail closed) until Redis is back.
//!
//! One file per concern: [`connection`] (one server or a cluster, reconnecting), [`scripts`]
//! (the Lua scripts, in `scripts/*.lua`), [`keys`] (the key layout), [`scan`] (every key of a
//! pattern, on every primary), [`migrate`] (data of earlier layouts), [`quota`] and [`catalog`].

mod catalog;
mod connection;
mod duplicates;
mod jobs;
mod keys;
mod migrate;
mod outbox;
mod quota;
mod scan;
mod scripts;
mod sessions;
mod webhooks;

use super::StateError;
use connection::Connection;
use redis::AsyncCommands;
use scripts::Scripts;

/// Quota and catalog in Redis.
#[derive(Clone)]
pub struct RedisState {
    connection: Connection,
    prefix: String,
    scripts: Scripts,
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
        let connection = connection::connect(url)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            scripts: Scripts::new(),
        })
    }

    fn conn(&self) -> Connection {
        self.connection.clone()
    }

    async fn get_string(&self, key: String) -> Result<Option<String>, StateError> {
        self.conn().get(key).await.map_err(unavailable)
    }
}
