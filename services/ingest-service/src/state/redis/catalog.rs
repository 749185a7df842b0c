//! The catalog: targets, image records (changed with their quota by one script), owners'
//! lists, idempotency results and locks.

use super::scan::SCAN_READS;
use super::{RedisState, decode, encode, unavailable};
use crate::state::{
    Catalog, Delivery, DupEntry, HookDelivery, IdempotencyRecord, ImageRecord, JobNext, JobRecord,
    Listed, Listing, OutboxEntry, Registered, SessionRecord, StateError, Swap, Swapped,
    TargetRecord, WebhookRecord,
};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use redis::AsyncCommands;
use std::time::Duration;

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
        let ws = swap.workspace;
        let none = self.dup_key(ws, "none");
        let dup_keys = |entry: Option<&DupEntry>| -> (String, Vec<String>, String) {
            match entry {
                None => (none.clone(), vec![none.clone(); 4], none.clone()),
                Some(entry) => (
                    self.dup_key(ws, &format!("sha:{}", entry.sha256)),
                    entry.bands().map_or_else(
                        || vec![none.clone(); 4],
                        |bands| {
                            bands
                                .iter()
                                .map(|band| self.dup_key(ws, &format!("q:{band}")))
                                .collect()
                        },
                    ),
                    self.dup_key(ws, &format!("img:{}", entry.image_id)),
                ),
            }
        };
        let (new_sha, new_bands, new_img) = dup_keys(swap.index);
        let (old_sha, old_bands, old_img) = dup_keys(swap.unindex);
        let mut script = self.scripts.swap_image.prepare_invoke();
        script
            .key(self.image_key(swap.workspace, swap.key))
            .key(self.ws_key(swap.workspace, "used"))
            .key(self.ws_key(swap.workspace, "reservations"))
            .key(self.ws_key(swap.workspace, "limit"))
            .key(self.owner_key(swap.workspace, owner))
            .key(self.outbox_key(swap.workspace))
            .arg(swap.expected.unwrap_or_default())
            .arg(json)
            .arg(swap.release)
            .arg(reservation)
            .arg(grow)
            .arg(swap.default_limit)
            .arg(op)
            .arg(entry)
            .arg(swap.event.unwrap_or_default())
            .key(new_sha)
            .key(&new_bands)
            .key(new_img)
            .key(old_sha)
            .key(&old_bands)
            .key(old_img)
            .arg(swap.index.map_or("", |e| e.image_id.as_str()))
            .arg(swap.index.map(encode).transpose()?.unwrap_or_default())
            .arg(swap.index.map_or(0, |e| e.created_ms))
            .arg(swap.unindex.map_or("", |e| e.image_id.as_str()))
            .arg(if swap.refuse_exact { "1" } else { "" })
            .arg(if swap.index.is_some_and(|e| e.bands().is_some()) {
                "1"
            } else {
                ""
            })
            .arg(if swap.unindex.is_some_and(|e| e.bands().is_some()) {
                "1"
            } else {
                ""
            });
        let reply: Vec<u64> = script
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [1] => Ok(Swapped::Done),
            [0] => Ok(Swapped::Conflict),
            [3] => Ok(Swapped::Duplicate),
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
            .scripts
            .unlock
            .key(self.key("lock", name))
            .arg(token)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
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
        let key = self.ws_key(workspace, "refuse_dups");
        let _: () = if refuse {
            self.conn().set(key, "1").await
        } else {
            self.conn().del(key).await
        }
        .map_err(unavailable)?;
        Ok(())
    }

    async fn refuses_duplicates(&self, workspace: &str) -> Result<bool, StateError> {
        Ok(self
            .get_string(self.ws_key(workspace, "refuse_dups"))
            .await?
            .is_some())
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

    async fn hook_queues(&self, all: bool) -> Result<Vec<(String, String)>, StateError> {
        self.hook_queue_names(all).await
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
