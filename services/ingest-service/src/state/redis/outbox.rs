//! Outboxes on Redis: a stream per workspace (`{ws}:outbox`) and one for the job queue
//! (`{~jobs}:outbox`), each appended to by the script that makes the change it announces. The
//! set `outboxes` names those written to lately; it is written before the change, so a writer
//! that dies between the two leaves a hint without events, never events without a hint (the
//! relay's periodic scan covers the one race left: a hint removed while an event is added).

use super::{RedisState, unavailable};
use crate::state::{OutboxEntry, StateError};
use redis::AsyncCommands;

impl RedisState {
    /// Names `name` as an outbox with events (before a change appends one).
    pub(super) async fn note_outbox(&self, name: &str) -> Result<(), StateError> {
        let _: u64 = self
            .conn()
            .sadd(self.outbox_hint_key(), name)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn outbox_names(&self, all: bool) -> Result<Vec<String>, StateError> {
        let mut names: Vec<String> = self
            .conn()
            .smembers(self.outbox_hint_key())
            .await
            .map_err(unavailable)?;
        if all {
            let prefix = format!("{}{{", self.prefix);
            for key in self.scan(&format!("{}{{*}}:outbox", self.prefix)).await? {
                if let Some(name) = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix("}:outbox"))
                {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(super) async fn outbox_entries(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StateError> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(self.outbox_key(name))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .filter_map(|(entry, fields)| {
                let event = fields
                    .chunks(2)
                    .find(|pair| pair.len() == 2 && pair[0] == "event")?[1]
                    .clone();
                Some(OutboxEntry { entry, event })
            })
            .collect())
    }

    pub(super) async fn remove_outbox_entries(
        &self,
        name: &str,
        entries: &[String],
    ) -> Result<(), StateError> {
        let key = self.outbox_key(name);
        if !entries.is_empty() {
            let _: u64 = redis::cmd("XDEL")
                .arg(&key)
                .arg(entries)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
        }
        // An empty outbox leaves the hint; one written to meanwhile joins it again.
        if self.stream_len(&key).await? == 0 {
            let _: u64 = self
                .conn()
                .srem(self.outbox_hint_key(), name)
                .await
                .map_err(unavailable)?;
            if self.stream_len(&key).await? > 0 {
                self.note_outbox(name).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn outbox_total(&self) -> Result<u64, StateError> {
        let mut total = 0;
        for name in self.outbox_names(true).await? {
            total += self.stream_len(&self.outbox_key(&name)).await?;
        }
        Ok(total)
    }

    async fn stream_len(&self, key: &str) -> Result<u64, StateError> {
        redis::cmd("XLEN")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}
