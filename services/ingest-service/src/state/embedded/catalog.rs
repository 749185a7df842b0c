//! The catalog: targets, image records with their owners' lists, idempotency results; locks
//! are delegated to [`super::locks`].

use super::duplicates::{exact_taken, index as dup_index, unindex as dup_unindex};
use super::outbox::append_event;
use super::quota::live_reservations;
use super::tables::*;
use super::{EmbeddedState, decode, encode, failed, now_secs};
use crate::state::{
    Catalog, Delivery, DupEntry, HookDelivery, IdempotencyRecord, ImageRecord, JobNext, JobRecord,
    Listed, Listing, OutboxEntry, Registered, SessionRecord, StateError, Swap, Swapped,
    TargetRecord, WebhookRecord, now_millis,
};
use async_trait::async_trait;
use redb::ReadableTable;
use std::time::{Duration, Instant};

#[async_trait]
impl Catalog for EmbeddedState {
    async fn put_target(&self, key: &str, target: &TargetRecord) -> Result<Registered, StateError> {
        let key = key.to_owned();
        let target = target.clone();
        self.write(move |txn| {
            let mut targets = txn.open_table(TARGETS).map_err(failed)?;
            let existing: Option<TargetRecord> = targets
                .get(key.as_str())
                .map_err(failed)?
                .map(|json| decode(json.value()))
                .transpose()?;
            Ok(match existing {
                None => {
                    targets
                        .insert(key.as_str(), encode(&target)?.as_str())
                        .map_err(failed)?;
                    Registered::Created
                }
                Some(existing) if existing == target => Registered::Unchanged,
                Some(existing) => Registered::Conflict(existing),
            })
        })
        .await
    }

    async fn target(&self, key: &str) -> Result<Option<TargetRecord>, StateError> {
        self.get_json(TARGETS, key).await
    }

    async fn remove_target(&self, key: &str) -> Result<bool, StateError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut targets = txn.open_table(TARGETS).map_err(failed)?;
            Ok(targets.remove(key.as_str()).map_err(failed)?.is_some())
        })
        .await
    }

    async fn image(&self, workspace: &str, key: &str) -> Result<Option<ImageRecord>, StateError> {
        let record: Option<ImageRecord> = self.get_json(IMAGES, key).await?;
        Ok(record.filter(|record| record.workspace == workspace))
    }

    async fn swap_image(&self, swap: &Swap<'_>) -> Result<Swapped, StateError> {
        let key = swap.key.to_owned();
        let expected = swap.expected.map(str::to_owned);
        let json = swap.image.map(encode).transpose()?;
        let workspace = swap.workspace.to_owned();
        let release = swap.release;
        let reservation = swap.reservation.map(|(id, bytes)| (id.to_owned(), bytes));
        let default_limit = swap.default_limit;
        let listing = swap.listing.map(|listing| match listing {
            Listing::Add { owner, entry } => (true, list_prefix(&workspace, owner) + entry),
            Listing::Remove { owner, entry } => (false, list_prefix(&workspace, owner) + entry),
        });
        let event = swap.event.map(str::to_owned);
        let index = swap.index.cloned();
        let unindex = swap.unindex.cloned();
        let refuse_exact = swap.refuse_exact;
        self.write(move |txn| {
            let mut images = txn.open_table(IMAGES).map_err(failed)?;
            let current: Option<ImageRecord> = images
                .get(key.as_str())
                .map_err(failed)?
                .map(|json| decode(json.value()))
                .transpose()?;
            if current.map(|record| record.key) != expected {
                return Ok(Swapped::Conflict);
            }
            if refuse_exact && let Some(entry) = &index {
                let except = [
                    entry.image_id.as_str(),
                    unindex.as_ref().map_or("", |e| e.image_id.as_str()),
                ];
                if exact_taken(txn, &workspace, entry, &except)? {
                    return Ok(Swapped::Duplicate);
                }
            }
            let mut used_table = txn.open_table(USED).map_err(failed)?;
            let used = counter(&used_table, &workspace)?.unwrap_or(0);
            let mut grow = 0;
            if let Some((id, bytes)) = &reservation {
                grow = *bytes;
                let (held, mine) = live_reservations(txn, &workspace, id, now_millis())?;
                if !mine {
                    let limit = counter(&txn.open_table(LIMITS).map_err(failed)?, &workspace)?
                        .unwrap_or(default_limit);
                    if used.saturating_add(held).saturating_add(grow) > limit {
                        return Ok(Swapped::QuotaExceeded {
                            limit,
                            used: used + held,
                        });
                    }
                }
                txn.open_table(RESERVATIONS)
                    .map_err(failed)?
                    .remove(format!("{workspace}/{id}").as_str())
                    .map_err(failed)?;
            }
            match &json {
                Some(json) => {
                    images.insert(key.as_str(), json.as_str()).map_err(failed)?;
                }
                None => {
                    images.remove(key.as_str()).map_err(failed)?;
                }
            }
            used_table
                .insert(
                    workspace.as_str(),
                    used.saturating_add(grow).saturating_sub(release),
                )
                .map_err(failed)?;
            if let Some((add, key)) = &listing {
                let mut lists = txn.open_table(OWNER_LISTS).map_err(failed)?;
                if *add {
                    lists.insert(key.as_str(), ()).map_err(failed)?;
                } else {
                    lists.remove(key.as_str()).map_err(failed)?;
                }
            }
            if let Some(event) = &event {
                append_event(txn, &workspace, event)?;
            }
            if let Some(entry) = &unindex {
                dup_unindex(txn, &workspace, entry)?;
            }
            if let Some(entry) = &index {
                dup_index(txn, &workspace, entry)?;
            }
            Ok(Swapped::Done)
        })
        .await
    }

    async fn images(&self) -> Result<Vec<ImageRecord>, StateError> {
        self.read(move |txn| {
            let table = txn.open_table(IMAGES).map_err(failed)?;
            let mut all = Vec::new();
            for entry in table.iter().map_err(failed)? {
                let (_, json) = entry.map_err(failed)?;
                all.push(decode(json.value())?);
            }
            Ok(all)
        })
        .await
    }

    async fn listed(
        &self,
        workspace: &str,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let prefix = list_prefix(workspace, owner);
        let start = format!("{prefix}{}", after.unwrap_or_default());
        let end = format!("{}0", &prefix[..prefix.len() - 1]);
        let skip = after.is_some();
        self.read(move |txn| {
            let table = txn.open_table(OWNER_LISTS).map_err(failed)?;
            let mut out = Vec::with_capacity(limit);
            for entry in table.range(start.as_str()..end.as_str()).map_err(failed)? {
                let (key, _) = entry.map_err(failed)?;
                let key = key.value();
                if skip && key == start {
                    continue;
                }
                if out.len() == limit {
                    break;
                }
                out.push(key[prefix.len()..].to_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn listings(&self) -> Result<Vec<Listed>, StateError> {
        self.read(|txn| {
            let table = txn.open_table(OWNER_LISTS).map_err(failed)?;
            let mut all = Vec::new();
            for entry in table.iter().map_err(failed)? {
                let (key, _) = entry.map_err(failed)?;
                let mut parts = key.value().splitn(3, '/');
                let (Some(workspace), Some(owner), Some(entry)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Some(owner) = hex::decode(owner)
                    .ok()
                    .and_then(|owner| String::from_utf8(owner).ok())
                else {
                    continue;
                };
                all.push(Listed {
                    workspace: workspace.to_owned(),
                    owner,
                    entry: entry.to_owned(),
                });
            }
            Ok(all)
        })
        .await
    }

    async fn set_listed(&self, listed: &Listed, present: bool) -> Result<(), StateError> {
        let key = list_prefix(&listed.workspace, &listed.owner) + &listed.entry;
        self.write(move |txn| {
            let mut table = txn.open_table(OWNER_LISTS).map_err(failed)?;
            if present {
                table.insert(key.as_str(), ()).map_err(failed)?;
            } else {
                table.remove(key.as_str()).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StateError> {
        let key = key.to_owned();
        let now = now_secs();
        self.read(move |txn| {
            let table = txn.open_table(IDEMPOTENCY).map_err(failed)?;
            let found = table.get(key.as_str()).map_err(failed)?;
            match found {
                Some(entry) => {
                    let (expires, json) = entry.value();
                    if expires > now {
                        decode(json).map(Some)
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_idempotency(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let key = key.to_owned();
        let json = encode(record)?;
        let now = now_secs();
        let expires = now + ttl.as_secs();
        self.write(move |txn| {
            let mut table = txn.open_table(IDEMPOTENCY).map_err(failed)?;
            let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(failed)?;
            let previous = table
                .insert(key.as_str(), (expires, json.as_str()))
                .map_err(failed)?
                .map(|old| old.value().0);
            if let Some(old) = previous {
                expiry.remove((old, key.as_str())).map_err(failed)?;
            }
            expiry.insert((expires, key.as_str()), ()).map_err(failed)?;
            // A few expired results go with each new one: the table holds the live ones.
            let mut expired = Vec::new();
            for entry in expiry
                .range(..(now, ""))
                .map_err(failed)?
                .take(IDEMPOTENCY_SWEEP)
            {
                let (index, _) = entry.map_err(failed)?;
                let (at, scope) = index.value();
                expired.push((at, scope.to_owned()));
            }
            for (at, scope) in expired {
                expiry.remove((at, scope.as_str())).map_err(failed)?;
                table.remove(scope.as_str()).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, StateError> {
        Ok(self.locks().try_lock(name, ttl, Instant::now()))
    }

    async fn unlock(&self, name: &str, token: &str) -> Result<(), StateError> {
        self.locks().unlock(name, token);
        Ok(())
    }
    async fn create_session(
        &self,
        session: &SessionRecord,
        max_open: usize,
    ) -> Result<bool, StateError> {
        self.create_session_record(session, max_open).await
    }

    async fn session(&self, scope: &str, id: &str) -> Result<Option<SessionRecord>, StateError> {
        self.session_record(scope, id).await
    }

    async fn update_session(
        &self,
        session: &SessionRecord,
        expected: u64,
    ) -> Result<bool, StateError> {
        self.update_session_record(session, expected).await
    }

    async fn remove_session(&self, session: &SessionRecord) -> Result<(), StateError> {
        self.remove_session_record(session).await
    }

    async fn expired_sessions(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StateError> {
        self.expired_session_records(now_ms, limit).await
    }

    async fn enqueue_job(&self, job: &JobRecord, event: Option<&str>) -> Result<(), StateError> {
        self.enqueue_job_record(job, event).await
    }

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StateError> {
        self.job_record(id).await
    }

    async fn take_jobs(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StateError> {
        self.take_job_entries(worker, limit, lease).await
    }

    async fn renew_job(
        &self,
        delivery: &Delivery,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StateError> {
        self.renew_job_entry(delivery, worker, lease).await
    }

    async fn update_job(
        &self,
        job: &JobRecord,
        expected: u64,
        next: JobNext<'_>,
        event: Option<&str>,
    ) -> Result<bool, StateError> {
        self.update_job_record(job, expected, next, event).await
    }

    async fn queued_jobs(&self) -> Result<u64, StateError> {
        self.queued_job_count().await
    }

    async fn expire_jobs(&self, now_ms: u64, limit: usize) -> Result<usize, StateError> {
        self.expire_job_records(now_ms, limit).await
    }

    async fn outboxes(&self) -> Result<Vec<String>, StateError> {
        self.outbox_names().await
    }

    async fn outbox(&self, name: &str, limit: usize) -> Result<Vec<OutboxEntry>, StateError> {
        self.outbox_entries(name, limit).await
    }

    async fn ack_outbox(&self, name: &str, entries: &[String]) -> Result<(), StateError> {
        self.remove_outbox_entries(name, entries).await
    }

    async fn outbox_len(&self) -> Result<u64, StateError> {
        self.outbox_total().await
    }

    async fn put_webhook(&self, hook: &WebhookRecord, max: usize) -> Result<bool, StateError> {
        self.put_webhook_record(hook, max).await
    }

    async fn duplicate_candidates(
        &self,
        workspace: &str,
        sha256: &str,
        phash: Option<&str>,
        per_key: usize,
    ) -> Result<Vec<DupEntry>, StateError> {
        self.dup_candidates(workspace, sha256, phash, per_key).await
    }

    async fn set_refuse_duplicates(&self, workspace: &str, refuse: bool) -> Result<(), StateError> {
        self.set_refuse_dups(workspace, refuse).await
    }

    async fn refuses_duplicates(&self, workspace: &str) -> Result<bool, StateError> {
        self.refuse_dups(workspace).await
    }

    async fn webhooks(&self, workspace: &str) -> Result<Vec<WebhookRecord>, StateError> {
        self.webhook_records(workspace).await
    }

    async fn remove_webhook(&self, workspace: &str, id: &str) -> Result<bool, StateError> {
        self.remove_webhook_record(workspace, id).await
    }

    async fn queue_deliveries(
        &self,
        workspace: &str,
        id: &str,
        deliveries: &[HookDelivery],
        max: usize,
    ) -> Result<usize, StateError> {
        self.push_deliveries(workspace, id, deliveries, max).await
    }

    async fn hook_queues(&self, _all: bool) -> Result<Vec<(String, String)>, StateError> {
        self.hook_queue_names().await
    }

    async fn delivery_head(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<HookDelivery>, StateError> {
        self.first_delivery(workspace, id).await
    }

    async fn settle_delivery(
        &self,
        workspace: &str,
        id: &str,
        delivery: &HookDelivery,
        log_max: usize,
    ) -> Result<bool, StateError> {
        self.settle_first_delivery(workspace, id, delivery, log_max)
            .await
    }

    async fn deliveries(
        &self,
        workspace: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<HookDelivery>, StateError> {
        self.delivery_records(workspace, id, limit).await
    }
}
