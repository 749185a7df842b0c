//! Outboxes on Redis: a stream per workspace (`{ws}:outbox`) and one for the job queue
//! (`{~jobs}:outbox`), each appended to by the script that makes the change it announces. Each
//! replica relays the outboxes it wrote to; [`RedisState::outbox_names`] scans for every one
//! (what a replica that died left).

use super::{RedisState, unavailable};
use crate::state::{OutboxEntry, StateError};

impl RedisState {
    pub(super) async fn outbox_names(&self) -> Result<Vec<String>, StateError> {
        let prefix = format!("{}{{", self.prefix);
        let mut names: Vec<String> = self
            .scan(&format!("{}{{*}}:outbox", self.prefix))
            .await?
            .into_iter()
            .filter_map(|key| {
                key.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix("}:outbox"))
                    .map(str::to_owned)
            })
            .collect();
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
        if entries.is_empty() {
            return Ok(());
        }
        let _: u64 = redis::cmd("XDEL")
            .arg(self.outbox_key(name))
            .arg(entries)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn outbox_total(&self) -> Result<u64, StateError> {
        let mut total = 0;
        for name in self.outbox_names().await? {
            let len: u64 = redis::cmd("XLEN")
                .arg(self.outbox_key(&name))
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            total += len;
        }
        Ok(total)
    }
}
