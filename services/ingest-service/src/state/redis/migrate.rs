//! Data written by versions before the current key layout, moved once on start.

use super::connection::Connection;
use super::keys::LAYOUT;
use super::{RedisState, decode, unavailable};
use crate::state::{ImageRecord, StateError};
use redis::AsyncCommands;

impl RedisState {
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
        let counter = &self.scripts.migrate_counter;
        let value = &self.scripts.migrate_value;
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
