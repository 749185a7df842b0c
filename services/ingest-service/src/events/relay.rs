//! The relay: every replica drains the outboxes. An outbox is held by one relay at a time (a
//! lock with a lease in the state backend; a relay that died is taken over when it lapses), read
//! oldest first, and each event is delivered before the next; an event leaves the outbox only
//! after every sink took it, so delivery is at least once and in order per outbox (hence per
//! target). A sink that fails stops that outbox until the next round; other outboxes go on.

use super::Routing;
use super::nats::{NatsSink, SinkError};
use super::webhooks::deliveries_of;
use crate::configuration::EventSettings;
use crate::state::{Catalog, OutboxEntry, StateError};
use crate::telemetry::Metrics;
use opentelemetry::KeyValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Where a test stops the relay for good (`IMAGING_RELAY_FAILPOINT`), to kill the process there:
/// `read` (events read, nothing published) or `published` (the first event published, not yet
/// removed from its outbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFailpoint {
    /// Events read, none published.
    Read,
    /// One event published, none removed.
    Published,
}

impl RelayFailpoint {
    /// The failpoint named by `IMAGING_RELAY_FAILPOINT`, if any.
    pub fn from_env() -> Option<Self> {
        match std::env::var("IMAGING_RELAY_FAILPOINT").ok()?.as_str() {
            "read" => Some(RelayFailpoint::Read),
            "published" => Some(RelayFailpoint::Published),
            _ => None,
        }
    }
}

/// The relay of one process.
pub struct Relay {
    catalog: Arc<dyn Catalog>,
    settings: EventSettings,
    wake: Arc<Notify>,
    hooks_ready: Arc<Notify>,
    nats: Option<NatsSink>,
    metrics: Metrics,
    failpoint: Option<RelayFailpoint>,
}

impl Relay {
    /// A relay over `catalog`'s outboxes, woken by `wake` (a change in this process); it wakes
    /// `hooks_ready` when it queued webhook deliveries.
    pub async fn new(
        catalog: Arc<dyn Catalog>,
        settings: EventSettings,
        wake: Arc<Notify>,
        hooks_ready: Arc<Notify>,
    ) -> Self {
        let nats = if settings.nats_url.is_empty() {
            None
        } else {
            match NatsSink::connect(&settings).await {
                Ok(sink) => Some(sink),
                Err(err) => {
                    tracing::error!(error = %err, "events will not reach NATS");
                    None
                }
            }
        };
        Self {
            catalog,
            settings,
            wake,
            hooks_ready,
            nats,
            metrics: Metrics::global(),
            failpoint: RelayFailpoint::from_env(),
        }
    }

    /// Relays until the task is aborted.
    pub async fn run(mut self) {
        let poll = Duration::from_millis(self.settings.poll_millis.max(10));
        let scan = Duration::from_secs(self.settings.scan_seconds.max(1));
        let mut last_scan: Option<Instant> = None;
        let relay_id = uuid::Uuid::new_v4().simple().to_string();
        loop {
            let all = last_scan.is_none_or(|at| at.elapsed() >= scan);
            match self.catalog.outboxes(all).await {
                Ok(names) => {
                    if all {
                        last_scan = Some(Instant::now());
                    }
                    for name in names {
                        if let Err(err) = self.drain(&name).await {
                            tracing::warn!(outbox = %name, relay = %relay_id, error = %err, "events not delivered yet; retrying");
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "outboxes not read; retrying"),
            }
            if let Ok(pending) = self.catalog.outbox_len().await
                && all
            {
                self.metrics.events_pending.record(pending, &[]);
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Delivers what the outbox `name` holds, if no other relay holds it.
    async fn drain(&mut self, name: &str) -> Result<(), SinkError> {
        let lease = Duration::from_secs(self.settings.lease_seconds.max(1));
        let lock = format!("outbox:{name}");
        let Some(token) = self
            .catalog
            .try_lock(&lock, lease)
            .await
            .map_err(|err| SinkError(err.to_string()))?
        else {
            return Ok(());
        };
        // Half the lease at most, so the hold never lapses while this relay works.
        let until = Instant::now() + lease / 2;
        let drained = self.drain_held(name, until).await;
        if let Err(err) = self.catalog.unlock(&lock, &token).await {
            tracing::warn!(error = %err, "outbox lock left to lapse");
        }
        drained
    }

    async fn drain_held(&mut self, name: &str, until: Instant) -> Result<(), SinkError> {
        while Instant::now() < until {
            let entries = self
                .catalog
                .outbox(name, self.settings.batch.max(1))
                .await
                .map_err(|err| SinkError(err.to_string()))?;
            if entries.is_empty() {
                return Ok(());
            }
            let full = entries.len() >= self.settings.batch.max(1);
            if self.failpoint == Some(RelayFailpoint::Read) {
                stop_here().await;
            }
            let mut delivered = Vec::with_capacity(entries.len());
            let mut routed = Vec::with_capacity(entries.len());
            let mut failed = None;
            for entry in &entries {
                match self.deliver(entry).await {
                    Ok(routing) => {
                        delivered.push(entry.entry.clone());
                        if let Some(routing) = routing {
                            routed.push((routing, entry.event.as_str()));
                        }
                    }
                    Err(err) => {
                        failed = Some(err);
                        break;
                    }
                }
                if self.failpoint == Some(RelayFailpoint::Published) {
                    stop_here().await;
                }
                if Instant::now() >= until {
                    break;
                }
            }
            self.queue_for_webhooks(&routed)
                .await
                .map_err(|err| SinkError(err.to_string()))?;
            self.catalog
                .ack_outbox(name, &delivered)
                .await
                .map_err(|err| SinkError(err.to_string()))?;
            if let Some(err) = failed {
                return Err(err);
            }
            if !full && delivered.len() == entries.len() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Queues the events for every webhook of their workspaces, in order (before they leave
    /// the outbox: a relay that dies here queues them again, with the same `webhook-id`).
    async fn queue_for_webhooks(&self, routed: &[(Routing, &str)]) -> Result<(), StateError> {
        let mut by_workspace: BTreeMap<&str, Vec<(String, String, String)>> = BTreeMap::new();
        for (routing, event) in routed {
            by_workspace
                .entry(routing.data.workspace.as_str())
                .or_default()
                .push((
                    routing.id.clone(),
                    routing.kind.clone(),
                    (*event).to_owned(),
                ));
        }
        let mut queued_any = false;
        for (workspace, events) in by_workspace {
            let hooks = self.catalog.webhooks(workspace).await?;
            if hooks.is_empty() {
                continue;
            }
            let deliveries = deliveries_of(&events);
            for hook in hooks {
                let queued = self
                    .catalog
                    .queue_deliveries(
                        workspace,
                        &hook.id,
                        &deliveries,
                        self.settings.webhook_max_queued,
                    )
                    .await?;
                if queued < deliveries.len() {
                    tracing::error!(workspace = %workspace, webhook = %hook.id, dropped = deliveries.len() - queued, "a webhook's queue is full: events not queued for it");
                }
                queued_any |= queued > 0;
            }
        }
        if queued_any {
            self.hooks_ready.notify_one();
        }
        Ok(())
    }

    /// Delivers one event to every broker; its routing, if it is readable.
    async fn deliver(&mut self, entry: &OutboxEntry) -> Result<Option<Routing>, SinkError> {
        let routing: Routing = match serde_json::from_str(&entry.event) {
            Ok(routing) => routing,
            Err(err) => {
                // Written by this service, so never expected: kept out of the way, not retried
                // for ever.
                tracing::error!(error = %err, entry = %entry.entry, "unreadable event dropped");
                return Ok(None);
            }
        };
        if let Some(nats) = &mut self.nats {
            match nats.publish(&routing, &entry.event).await {
                Ok(()) => self
                    .metrics
                    .events_delivered
                    .add(1, &[KeyValue::new("sink", "nats")]),
                Err(err) => {
                    self.metrics
                        .event_failures
                        .add(1, &[KeyValue::new("sink", "nats")]);
                    return Err(err);
                }
            }
        }
        Ok(Some(routing))
    }
}

/// A failpoint: the relay stops here for good (the test kills the process).
async fn stop_here() {
    tracing::warn!("relay stopped at a failpoint");
    std::future::pending::<()>().await;
}
