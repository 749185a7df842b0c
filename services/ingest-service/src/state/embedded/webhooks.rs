//! Webhooks in the embedded store: registrations keyed by `{workspace}/{id}`, each webhook's
//! deliveries and settled deliveries in tables keyed by (webhook, sequence number).

use super::outbox::distinct_names;
use super::tables::{HOOK_LOG, HOOK_QUEUE, HOOKS, OUTBOX_SEQ};
use super::{EmbeddedState, decode, encode, failed};
use crate::state::{DeliveryState, HookDelivery, StateError, WebhookRecord};
use redb::ReadableTable;

fn hook_key(workspace: &str, id: &str) -> String {
    format!("{workspace}/{id}")
}

/// The next sequence number of the delivery tables.
fn next_seq(txn: &redb::WriteTransaction) -> Result<u64, StateError> {
    let mut seq = txn.open_table(OUTBOX_SEQ).map_err(failed)?;
    let next = seq.get("hook").map_err(failed)?.map_or(0, |v| v.value());
    seq.insert("hook", next + 1).map_err(failed)?;
    Ok(next)
}

/// The (sequence, JSON) of the first `limit` rows of `hook` in `table`, from the oldest or the
/// newest.
fn rows(
    table: &impl ReadableTable<(&'static str, u64), &'static str>,
    hook: &str,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<(u64, String)>, StateError> {
    let range = table.range((hook, 0)..=(hook, u64::MAX)).map_err(failed)?;
    let mut out = Vec::new();
    let mut push = |entry: Result<_, redb::StorageError>| -> Result<bool, StateError> {
        let (key, value): (
            redb::AccessGuard<'_, (&str, u64)>,
            redb::AccessGuard<'_, &str>,
        ) = entry.map_err(failed)?;
        out.push((key.value().1, value.value().to_owned()));
        Ok(out.len() < limit)
    };
    if newest_first {
        for entry in range.rev() {
            if !push(entry)? {
                break;
            }
        }
    } else {
        for entry in range {
            if !push(entry)? {
                break;
            }
        }
    }
    Ok(out)
}

impl EmbeddedState {
    pub(super) async fn put_webhook_record(
        &self,
        hook: &WebhookRecord,
        max: usize,
    ) -> Result<bool, StateError> {
        let hook = hook.clone();
        self.write(move |txn| {
            let mut hooks = txn.open_table(HOOKS).map_err(failed)?;
            let key = hook_key(&hook.workspace, &hook.id);
            let prefix = format!("{}/", hook.workspace);
            let exists = hooks.get(key.as_str()).map_err(failed)?.is_some();
            let count = hooks
                .range(prefix.as_str()..)
                .map_err(failed)?
                .take_while(|entry| {
                    entry
                        .as_ref()
                        .is_ok_and(|(k, _)| k.value().starts_with(&prefix))
                })
                .count();
            if !exists && count >= max {
                return Ok(false);
            }
            hooks
                .insert(key.as_str(), encode(&hook)?.as_str())
                .map_err(failed)?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn webhook_records(
        &self,
        workspace: &str,
    ) -> Result<Vec<WebhookRecord>, StateError> {
        let prefix = format!("{workspace}/");
        self.read(move |txn| {
            let hooks = txn.open_table(HOOKS).map_err(failed)?;
            let mut out: Vec<WebhookRecord> = Vec::new();
            for entry in hooks.range(prefix.as_str()..).map_err(failed)? {
                let (key, json) = entry.map_err(failed)?;
                if !key.value().starts_with(&prefix) {
                    break;
                }
                out.push(decode(json.value())?);
            }
            out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
            Ok(out)
        })
        .await
    }

    pub(super) async fn remove_webhook_record(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<bool, StateError> {
        let key = hook_key(workspace, id);
        self.write(move |txn| {
            let removed = txn
                .open_table(HOOKS)
                .map_err(failed)?
                .remove(key.as_str())
                .map_err(failed)?
                .is_some();
            for table in [HOOK_QUEUE, HOOK_LOG] {
                let mut table = txn.open_table(table).map_err(failed)?;
                let seqs: Vec<u64> = rows(&table, &key, usize::MAX, false)?
                    .into_iter()
                    .map(|(seq, _)| seq)
                    .collect();
                for seq in seqs {
                    table.remove((key.as_str(), seq)).map_err(failed)?;
                }
            }
            Ok(removed)
        })
        .await
    }

    pub(super) async fn push_deliveries(
        &self,
        workspace: &str,
        id: &str,
        deliveries: &[HookDelivery],
        max: usize,
    ) -> Result<usize, StateError> {
        let key = hook_key(workspace, id);
        let deliveries = deliveries.to_vec();
        self.write(move |txn| {
            let queued = {
                let table = txn.open_table(HOOK_QUEUE).map_err(failed)?;
                table
                    .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))
                    .map_err(failed)?
                    .count()
            };
            let room = max.saturating_sub(queued).min(deliveries.len());
            for delivery in &deliveries[..room] {
                let seq = next_seq(txn)?;
                txn.open_table(HOOK_QUEUE)
                    .map_err(failed)?
                    .insert((key.as_str(), seq), encode(delivery)?.as_str())
                    .map_err(failed)?;
            }
            Ok(room)
        })
        .await
    }

    pub(super) async fn hook_queue_names(&self) -> Result<Vec<(String, String)>, StateError> {
        self.read(|txn| {
            let names = distinct_names(&txn.open_table(HOOK_QUEUE).map_err(failed)?)?;
            Ok(names
                .into_iter()
                .filter_map(|name| {
                    let (workspace, id) = name.split_once('/')?;
                    Some((workspace.to_owned(), id.to_owned()))
                })
                .collect())
        })
        .await
    }

    pub(super) async fn first_delivery(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<HookDelivery>, StateError> {
        let key = hook_key(workspace, id);
        self.read(move |txn| {
            let table = txn.open_table(HOOK_QUEUE).map_err(failed)?;
            rows(&table, &key, 1, false)?
                .first()
                .map(|(_, json)| decode(json))
                .transpose()
        })
        .await
    }

    pub(super) async fn settle_first_delivery(
        &self,
        workspace: &str,
        id: &str,
        delivery: &HookDelivery,
        log_max: usize,
    ) -> Result<bool, StateError> {
        let key = hook_key(workspace, id);
        let delivery = delivery.clone();
        self.write(move |txn| {
            let mut queue = txn.open_table(HOOK_QUEUE).map_err(failed)?;
            let Some((seq, json)) = rows(&queue, &key, 1, false)?.into_iter().next() else {
                return Ok(false);
            };
            let head: HookDelivery = decode(&json)?;
            if head.event_id != delivery.event_id {
                return Ok(false);
            }
            let json = encode(&delivery)?;
            if delivery.state == DeliveryState::Pending {
                queue
                    .insert((key.as_str(), seq), json.as_str())
                    .map_err(failed)?;
                return Ok(true);
            }
            queue.remove((key.as_str(), seq)).map_err(failed)?;
            drop(queue);
            let logged = next_seq(txn)?;
            let mut log = txn.open_table(HOOK_LOG).map_err(failed)?;
            log.insert((key.as_str(), logged), json.as_str())
                .map_err(failed)?;
            let kept = rows(&log, &key, usize::MAX, true)?;
            for (old, _) in kept.into_iter().skip(log_max.max(1)) {
                log.remove((key.as_str(), old)).map_err(failed)?;
            }
            Ok(true)
        })
        .await
    }

    pub(super) async fn delivery_records(
        &self,
        workspace: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<HookDelivery>, StateError> {
        let key = hook_key(workspace, id);
        let limit = limit.max(1);
        self.read(move |txn| {
            let mut out = rows(
                &txn.open_table(HOOK_QUEUE).map_err(failed)?,
                &key,
                limit,
                false,
            )?;
            if out.len() < limit {
                let left = limit - out.len();
                out.extend(rows(
                    &txn.open_table(HOOK_LOG).map_err(failed)?,
                    &key,
                    left,
                    true,
                )?);
            }
            out.into_iter().map(|(_, json)| decode(&json)).collect()
        })
        .await
    }
}
