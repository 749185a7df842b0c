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

/// The outboxes this process wrote events to, kept until its relay finds them empty, and the
/// signal that wakes the relay. A replica relays what it wrote at once; what a replica that died
/// left is found by the periodic scan of every outbox (`events.scan_seconds`), and at the start
/// of every relay.
#[derive(Debug, Default)]
pub struct Pending {
    /// Outbox -> how many events this process wrote to it (a name leaves only if none was
    /// written since the relay looked).
    names: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    wake: Notify,
}

impl Pending {
    /// An event was written to the outbox `name`.
    pub fn wrote(&self, name: &str) {
        *self.lock().entry(name.to_owned()).or_default() += 1;
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, u64>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The outboxes to drain, each with its count as seen now.
    fn names(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .map(|(name, count)| (name.clone(), *count))
            .collect()
    }

    /// The relay found `name` empty after it saw `count` writes: it leaves unless one came since.
    fn drained(&self, name: &str, count: u64) {
        let mut names = self.lock();
        if names.get(name) == Some(&count) {
            names.remove(name);
        }
    }
}

/// The relay of one process.
pub struct Relay {
    catalog: Arc<dyn Catalog>,
    settings: EventSettings,
    pending: Arc<Pending>,
    hooks_ready: Arc<Notify>,
    nats: Option<NatsSink>,
    metrics: Metrics,
    failpoint: Option<RelayFailpoint>,
    stop: tokio_util::sync::CancellationToken,
}

impl Relay {
    /// A relay over `catalog`'s outboxes, told of this process's by `pending`; it wakes
    /// `hooks_ready` when it queued webhook deliveries.
    pub async fn new(
        catalog: Arc<dyn Catalog>,
        settings: EventSettings,
        pending: Arc<Pending>,
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
            pending,
            hooks_ready,
            nats,
            metrics: Metrics::global(),
            failpoint: RelayFailpoint::from_env(),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Relays until `stop` is cancelled; then it finishes the batch it is on and lets go of the
    /// outbox, so another replica takes it at once (a process killed instead leaves its hold to
    /// lapse after `events.lease_seconds`).
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        self.stop = stop;
        let poll = Duration::from_millis(self.settings.poll_millis.max(10));
        let scan = Duration::from_secs(self.settings.scan_seconds.max(1));
        let mut last_scan: Option<Instant> = None;
        let relay_id = uuid::Uuid::new_v4().simple().to_string();
        loop {
            let all = last_scan.is_none_or(|at| at.elapsed() >= scan);
            let mut names = self.pending.names();
            if all {
                match self.catalog.outboxes().await {
                    Ok(found) => {
                        last_scan = Some(Instant::now());
                        // Found by the scan alone: nothing to take out of the pending set.
                        names.extend(found.into_iter().map(|name| (name, u64::MAX)));
                        names.sort();
                        names.dedup_by(|b, a| a.0 == b.0);
                    }
                    Err(err) => tracing::warn!(error = %err, "outboxes not scanned; retrying"),
                }
            }
            for (name, count) in names {
                if self.stop.is_cancelled() {
                    return;
                }
                match self.drain(&name).await {
                    Ok(Drained::Empty) => self.pending.drained(&name, count),
                    Ok(Drained::Busy) => {}
                    Err(err) => {
                        tracing::warn!(outbox = %name, relay = %relay_id, error = %err, "events not delivered yet; retrying");
                    }
                }
            }
            if all && let Ok(pending) = self.catalog.outbox_len().await {
                self.metrics.events_pending.record(pending, &[]);
            }
            tokio::select! {
                () = self.pending.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Delivers what the outbox `name` holds, if no other relay holds it.
    async fn drain(&mut self, name: &str) -> Result<Drained, SinkError> {
        let lease = Duration::from_secs(self.settings.lease_seconds.max(1));
        let lock = format!("outbox:{name}");
        let Some(token) = self
            .catalog
            .try_lock(&lock, lease)
            .await
            .map_err(|err| SinkError(err.to_string()))?
        else {
            return Ok(Drained::Busy);
        };
        // Half the lease at most, so the hold never lapses while this relay works.
        let until = Instant::now() + lease / 2;
        let drained = self.drain_held(name, until).await;
        if let Err(err) = self.catalog.unlock(&lock, &token).await {
            tracing::warn!(error = %err, "outbox lock left to lapse");
        }
        drained
    }

    async fn drain_held(&mut self, name: &str, until: Instant) -> Result<Drained, SinkError> {
        while Instant::now() < until && !self.stop.is_cancelled() {
            let entries = self
                .catalog
                .outbox(name, self.settings.batch.max(1))
                .await
                .map_err(|err| SinkError(err.to_string()))?;
            if entries.is_empty() {
                return Ok(Drained::Empty);
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
                return Ok(Drained::Empty);
            }
        }
        Ok(Drained::Busy)
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

/// What a drain left.
enum Drained {
    /// The outbox was found empty.
    Empty,
    /// Another relay holds it, or this one ran out of its time: events may be left.
    Busy,
}

/// A failpoint: the relay stops here for good (the test kills the process).
async fn stop_here() {
    tracing::warn!("relay stopped at a failpoint");
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::Pending;

    #[test]
    fn an_outbox_written_to_while_the_relay_drained_it_stays_pending() {
        let pending = Pending::default();
        pending.wrote("w1");
        pending.wrote("w2");
        let seen = pending.names();
        // An event lands in w1 after the relay looked, before it found w1 empty.
        pending.wrote("w1");
        for (name, count) in seen {
            pending.drained(&name, count);
        }
        let left: Vec<String> = pending.names().into_iter().map(|(name, _)| name).collect();
        assert_eq!(left, ["w1"]);
        let seen = pending.names();
        pending.drained("w1", seen[0].1);
        assert!(pending.names().is_empty());
    }
}
