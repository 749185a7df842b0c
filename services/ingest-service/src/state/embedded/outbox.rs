//! Outboxes in the embedded store: one table keyed by (outbox, sequence number), appended to in
//! the transaction of the change each event announces.

use super::tables::{OUTBOX, OUTBOX_SEQ};
use super::{EmbeddedState, failed};
use crate::state::{OutboxEntry, StateError};
use redb::{ReadableTable, ReadableTableMetadata};

/// Appends `event` to the outbox `name` in the transaction `txn`.
pub(super) fn append_event(
    txn: &redb::WriteTransaction,
    name: &str,
    event: &str,
) -> Result<(), StateError> {
    let mut seq = txn.open_table(OUTBOX_SEQ).map_err(failed)?;
    let next = seq.get("next").map_err(failed)?.map_or(0, |v| v.value());
    seq.insert("next", next + 1).map_err(failed)?;
    txn.open_table(OUTBOX)
        .map_err(failed)?
        .insert((name, next), event)
        .map_err(failed)?;
    Ok(())
}

/// The distinct first parts of the keys of a table keyed by (name, sequence number): one step
/// per name, each range starting past the name before.
pub(super) fn distinct_names(
    table: &impl ReadableTable<(&'static str, u64), &'static str>,
) -> Result<Vec<String>, StateError> {
    let mut names: Vec<String> = Vec::new();
    loop {
        let range = match names.last() {
            None => table.range::<(&str, u64)>(..).map_err(failed)?,
            Some(name) => table.range((name.as_str(), u64::MAX)..).map_err(failed)?,
        };
        let mut next = None;
        for entry in range {
            let (key, _) = entry.map_err(failed)?;
            let name = key.value().0;
            if names.last().map(String::as_str) != Some(name) {
                next = Some(name.to_owned());
                break;
            }
        }
        match next {
            Some(name) => names.push(name),
            None => return Ok(names),
        }
    }
}

impl EmbeddedState {
    pub(super) async fn outbox_names(&self) -> Result<Vec<String>, StateError> {
        self.read(|txn| distinct_names(&txn.open_table(OUTBOX).map_err(failed)?))
            .await
    }

    pub(super) async fn outbox_entries(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StateError> {
        let name = name.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(OUTBOX).map_err(failed)?;
            let mut entries = Vec::new();
            for entry in table
                .range((name.as_str(), 0)..=(name.as_str(), u64::MAX))
                .map_err(failed)?
                .take(limit.max(1))
            {
                let (key, event) = entry.map_err(failed)?;
                entries.push(OutboxEntry {
                    entry: key.value().1.to_string(),
                    event: event.value().to_owned(),
                });
            }
            Ok(entries)
        })
        .await
    }

    pub(super) async fn remove_outbox_entries(
        &self,
        name: &str,
        entries: &[String],
    ) -> Result<(), StateError> {
        let name = name.to_owned();
        let seqs: Vec<u64> = entries.iter().filter_map(|e| e.parse().ok()).collect();
        self.write(move |txn| {
            let mut table = txn.open_table(OUTBOX).map_err(failed)?;
            for seq in seqs {
                table.remove((name.as_str(), seq)).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn outbox_total(&self) -> Result<u64, StateError> {
        self.read(|txn| {
            txn.open_table(OUTBOX)
                .map_err(failed)?
                .len()
                .map_err(failed)
        })
        .await
    }
}
