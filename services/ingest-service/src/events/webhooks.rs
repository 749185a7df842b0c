//! Webhooks: the relay queues every event of a workspace for each of its webhooks (in the state
//! backend, in order), and the dispatcher of every replica delivers each webhook's queue one
//! request at a time, oldest first, signed as Standard Webhooks say (`webhook-id` = the event
//! ID, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`).
//! A delivery that fails (no 2xx in time) is retried with a doubling backoff until
//! `webhook_retry_seconds` after it was queued, then kept as failed in the webhook's log. A
//! webhook is held by one dispatcher at a time (a lock with a lease); at most
//! `webhook_concurrency` webhooks are worked at once per replica, each request under a timeout,
//! so a slow or silent endpoint holds one slot for a timeout and nothing else.

use crate::configuration::EventSettings;
use crate::state::{Catalog, DeliveryState, HookDelivery, WebhookRecord, now_millis};
use crate::telemetry::Metrics;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use opentelemetry::KeyValue;
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The key of a secret (`whsec_` and base64), if it is one.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(encoded).ok()
}

/// The `webhook-signature` of `body` sent as `id` at `timestamp` (Unix seconds).
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Delivers the webhooks' queues.
pub struct Dispatcher {
    catalog: Arc<dyn Catalog>,
    settings: EventSettings,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
    busy: Arc<Mutex<HashSet<(String, String)>>>,
    wake: Arc<Notify>,
    metrics: Metrics,
}

impl Dispatcher {
    /// A dispatcher over `catalog`'s webhook queues, woken by `wake` (the relay queued some).
    pub fn new(catalog: Arc<dyn Catalog>, settings: EventSettings, wake: Arc<Notify>) -> Self {
        let timeout = Duration::from_millis(settings.webhook_timeout_millis.max(1));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect is an answer (not 2xx): an endpoint cannot send deliveries elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("imaging-webhooks/1")
            .build()
            .expect("the webhook client builds");
        Self {
            catalog,
            slots: Arc::new(Semaphore::new(settings.webhook_concurrency.max(1))),
            settings,
            http,
            busy: Arc::default(),
            wake,
            metrics: Metrics::global(),
        }
    }

    /// Dispatches until the task is aborted.
    pub async fn run(self) {
        let this = Arc::new(self);
        let poll = Duration::from_millis(this.settings.poll_millis.max(10));
        let scan = Duration::from_secs(this.settings.scan_seconds.max(1));
        let mut last_scan: Option<Instant> = None;
        loop {
            let all = last_scan.is_none_or(|at| at.elapsed() >= scan);
            match this.catalog.hook_queues(all).await {
                Ok(queues) => {
                    if all {
                        last_scan = Some(Instant::now());
                    }
                    for queue in queues {
                        let Ok(slot) = this.slots.clone().try_acquire_owned() else {
                            break;
                        };
                        if !this.lock_busy().insert(queue.clone()) {
                            continue;
                        }
                        let worker = this.clone();
                        tokio::spawn(async move {
                            let (workspace, id) = &queue;
                            if let Err(err) = worker.work(workspace, id).await {
                                tracing::warn!(workspace = %workspace, webhook = %id, error = %err, "webhook queue not worked; retrying");
                            }
                            worker.lock_busy().remove(&queue);
                            drop(slot);
                        });
                    }
                }
                Err(err) => tracing::warn!(error = %err, "webhook queues not read; retrying"),
            }
            tokio::select! {
                () = this.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers what is due in one webhook's queue, oldest first, if no other dispatcher holds it.
    async fn work(&self, workspace: &str, id: &str) -> Result<(), crate::state::StateError> {
        let timeout = Duration::from_millis(self.settings.webhook_timeout_millis.max(1));
        let lease = Duration::from_secs(self.settings.lease_seconds.max(1)).max(timeout * 3);
        let lock = format!("hook:{workspace}/{id}");
        let Some(token) = self.catalog.try_lock(&lock, lease).await? else {
            return Ok(());
        };
        let worked = self
            .work_held(workspace, id, Instant::now() + lease / 2)
            .await;
        if let Err(err) = self.catalog.unlock(&lock, &token).await {
            tracing::warn!(error = %err, "webhook lock left to lapse");
        }
        worked
    }

    async fn work_held(
        &self,
        workspace: &str,
        id: &str,
        until: Instant,
    ) -> Result<(), crate::state::StateError> {
        let mut hook: Option<WebhookRecord> = None;
        // Stops before a request that could outlast the hold.
        let timeout = Duration::from_millis(self.settings.webhook_timeout_millis.max(1));
        while Instant::now() + timeout < until {
            let Some(mut delivery) = self.catalog.delivery_head(workspace, id).await? else {
                return Ok(());
            };
            let now = now_millis();
            if delivery.next_ms > now {
                return Ok(());
            }
            if hook.is_none() {
                hook = self
                    .catalog
                    .webhooks(workspace)
                    .await?
                    .into_iter()
                    .find(|hook| hook.id == id);
            }
            let Some(hook) = &hook else {
                // Removed meanwhile: its queue goes with it.
                self.catalog.remove_webhook(workspace, id).await?;
                return Ok(());
            };
            let outcome = self.send(hook, &delivery).await;
            delivery.attempts += 1;
            let now = now_millis();
            match outcome {
                Ok(code) => {
                    delivery.state = DeliveryState::Delivered;
                    delivery.last_code = code;
                    delivery.last_error.clear();
                    delivery.finished_ms = now;
                    self.metrics
                        .events_delivered
                        .add(1, &[KeyValue::new("sink", "webhook")]);
                }
                Err((code, error)) => {
                    self.metrics
                        .event_failures
                        .add(1, &[KeyValue::new("sink", "webhook")]);
                    delivery.last_code = code;
                    delivery.last_error = error;
                    let doubling = 1u64 << (delivery.attempts - 1).min(30);
                    let wait = self
                        .settings
                        .webhook_retry_base_millis
                        .saturating_mul(doubling)
                        .min(self.settings.webhook_retry_max_seconds.saturating_mul(1000));
                    let give_up = delivery
                        .created_ms
                        .saturating_add(self.settings.webhook_retry_seconds.saturating_mul(1000));
                    if now.saturating_add(wait) > give_up {
                        delivery.state = DeliveryState::Failed;
                        delivery.finished_ms = now;
                        tracing::warn!(workspace = %workspace, webhook = %id, event = %delivery.event_id, "webhook delivery given up after the retry period");
                    } else {
                        delivery.next_ms = now.saturating_add(wait);
                    }
                }
            }
            let settled = self
                .catalog
                .settle_delivery(workspace, id, &delivery, self.settings.webhook_log_size)
                .await?;
            if !settled || delivery.state == DeliveryState::Pending {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One attempt: the endpoint's 2xx status, or its status (0: none) and why it failed.
    async fn send(
        &self,
        hook: &WebhookRecord,
        delivery: &HookDelivery,
    ) -> Result<u16, (u16, String)> {
        let Some(key) = secret_key(&hook.secret) else {
            return Err((0, "the webhook's secret is unreadable".to_owned()));
        };
        let timestamp = now_millis() / 1000;
        let sent = self
            .http
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(&key, &delivery.event_id, timestamp, &delivery.event),
            )
            .body(delivery.event.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            // The body is never read: an endpoint cannot make the dispatcher hold its answer.
            Ok(response) => Err((
                response.status().as_u16(),
                format!("the endpoint answered {}", response.status().as_u16()),
            )),
            Err(err) if err.is_timeout() => Err((0, "no answer in time".to_owned())),
            Err(err) if err.is_connect() => {
                Err((0, "the endpoint could not be reached".to_owned()))
            }
            Err(_) => Err((0, "the request failed".to_owned())),
        }
    }
}

/// The deliveries of `events` (ID, type, JSON) for a webhook, due now.
pub(crate) fn deliveries_of(events: &[(String, String, String)]) -> Vec<HookDelivery> {
    let now = now_millis();
    events
        .iter()
        .map(|(id, kind, event)| HookDelivery {
            event_id: id.clone(),
            event_type: kind.clone(),
            event: event.clone(),
            created_ms: now,
            attempts: 0,
            next_ms: now,
            state: DeliveryState::Pending,
            last_code: 0,
            last_error: String::new(),
            finished_ms: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
