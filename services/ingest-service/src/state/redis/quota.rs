//! Quotas: limits, usage and reservations (a hash per workspace), changed by scripts.

use super::{RedisState, unavailable};
use crate::state::{Quota, Reservation, StateError};
use async_trait::async_trait;
use redis::AsyncCommands;
use std::time::Duration;

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
            .scripts
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
            .scripts
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
