//! Webhooks on Redis: the registrations in a hash per workspace, each webhook's deliveries in a
//! list (oldest first) and its settled ones in a capped list, all in the workspace's slot. The
//! set `hookqueues` names webhooks queued to lately; it is written before the deliveries, and the
//! dispatcher's periodic scan finds the rest.

use super::{RedisState, decode, encode, unavailable};
use crate::state::{HookDelivery, StateError, WebhookRecord};
use redis::AsyncCommands;

impl RedisState {
    pub(super) async fn put_webhook_record(
        &self,
        hook: &WebhookRecord,
        max: usize,
    ) -> Result<bool, StateError> {
        let put: u64 = self
            .scripts
            .put_webhook
            .key(self.hooks_key(&hook.workspace))
            .arg(&hook.id)
            .arg(encode(hook)?)
            .arg(max)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(put == 1)
    }

    pub(super) async fn webhook_records(
        &self,
        workspace: &str,
    ) -> Result<Vec<WebhookRecord>, StateError> {
        let values: Vec<String> = self
            .conn()
            .hvals(self.hooks_key(workspace))
            .await
            .map_err(unavailable)?;
        let mut hooks = values
            .into_iter()
            .filter_map(|json| decode(Some(json)).transpose())
            .collect::<Result<Vec<WebhookRecord>, _>>()?;
        hooks.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(hooks)
    }

    pub(super) async fn remove_webhook_record(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<bool, StateError> {
        let removed: u64 = self
            .conn()
            .hdel(self.hooks_key(workspace), id)
            .await
            .map_err(unavailable)?;
        let _: u64 = self
            .conn()
            .del(&[
                self.hook_queue_key(workspace, id),
                self.hook_log_key(workspace, id),
            ])
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }

    pub(super) async fn push_deliveries(
        &self,
        workspace: &str,
        id: &str,
        deliveries: &[HookDelivery],
        max: usize,
    ) -> Result<usize, StateError> {
        let key = self.hook_queue_key(workspace, id);
        let queued: usize = self.conn().llen(&key).await.map_err(unavailable)?;
        let room = max.saturating_sub(queued).min(deliveries.len());
        if room == 0 {
            return Ok(0);
        }
        let _: u64 = self
            .conn()
            .sadd(self.hook_hint_key(), format!("{workspace}/{id}"))
            .await
            .map_err(unavailable)?;
        let values = deliveries[..room]
            .iter()
            .map(encode)
            .collect::<Result<Vec<String>, _>>()?;
        let _: u64 = self.conn().rpush(&key, values).await.map_err(unavailable)?;
        Ok(room)
    }

    pub(super) async fn hook_queue_names(
        &self,
        all: bool,
    ) -> Result<Vec<(String, String)>, StateError> {
        let mut names: Vec<String> = self
            .conn()
            .smembers(self.hook_hint_key())
            .await
            .map_err(unavailable)?;
        if all {
            let prefix = format!("{}{{", self.prefix);
            for key in self.scan(&format!("{}{{*}}:hookq:*", self.prefix)).await? {
                if let Some((workspace, id)) = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split_once("}:hookq:"))
                {
                    names.push(format!("{workspace}/{id}"));
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let (workspace, id) = name.split_once('/')?;
                Some((workspace.to_owned(), id.to_owned()))
            })
            .collect())
    }

    pub(super) async fn first_delivery(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<HookDelivery>, StateError> {
        let key = self.hook_queue_key(workspace, id);
        let head: Option<String> = self.conn().lindex(&key, 0).await.map_err(unavailable)?;
        if head.is_none() {
            // Nothing waits: the hint goes (a delivery queued meanwhile puts it back).
            let _: u64 = self
                .conn()
                .srem(self.hook_hint_key(), format!("{workspace}/{id}"))
                .await
                .map_err(unavailable)?;
            let len: u64 = self.conn().llen(&key).await.map_err(unavailable)?;
            if len > 0 {
                let _: u64 = self
                    .conn()
                    .sadd(self.hook_hint_key(), format!("{workspace}/{id}"))
                    .await
                    .map_err(unavailable)?;
            }
        }
        decode(head)
    }

    pub(super) async fn settle_first_delivery(
        &self,
        workspace: &str,
        id: &str,
        delivery: &HookDelivery,
        log_max: usize,
    ) -> Result<bool, StateError> {
        let settled = delivery.state != crate::state::DeliveryState::Pending;
        let changed: u64 = self
            .scripts
            .settle_delivery
            .key(self.hook_queue_key(workspace, id))
            .key(self.hook_log_key(workspace, id))
            .arg(&delivery.event_id)
            .arg(encode(delivery)?)
            .arg(if settled { "done" } else { "retry" })
            .arg(log_max.max(1))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }

    pub(super) async fn delivery_records(
        &self,
        workspace: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<HookDelivery>, StateError> {
        let limit = isize::try_from(limit.max(1)).unwrap_or(isize::MAX);
        let mut values: Vec<String> = self
            .conn()
            .lrange(self.hook_queue_key(workspace, id), 0, limit - 1)
            .await
            .map_err(unavailable)?;
        let left = limit - isize::try_from(values.len()).unwrap_or(0);
        if left > 0 {
            let settled: Vec<String> = self
                .conn()
                .lrange(self.hook_log_key(workspace, id), 0, left - 1)
                .await
                .map_err(unavailable)?;
            values.extend(settled);
        }
        values
            .into_iter()
            .filter_map(|json| decode(Some(json)).transpose())
            .collect()
    }
}
