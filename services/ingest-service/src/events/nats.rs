//! The NATS JetStream sink: one publish per event on `{prefix}.{workspace}.{type}`, with the
//! event ID as `Nats-Msg-Id` (the stream stores an ID once within its duplicate window), each
//! waited for until the stream acknowledges it. The stream is created on first use if the
//! settings say so. The client reconnects by itself; a publish that gets no acknowledgement in
//! time is an error the relay retries.

use super::{Routing, subject_token};
use crate::configuration::EventSettings;
use std::time::Duration;

/// A failed delivery (never shown to clients).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A connection to NATS and the JetStream context over it.
pub(super) struct NatsSink {
    jetstream: async_nats::jetstream::Context,
    settings: EventSettings,
    stream_ready: bool,
}

impl NatsSink {
    /// Connects (in the background, retrying: a broker that is down now delays events, never
    /// the service's start).
    pub(super) async fn connect(settings: &EventSettings) -> Result<Self, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(settings.nats_url.as_str())
            .await
            .map_err(|err| SinkError(format!("connecting to NATS: {err}")))?;
        let mut jetstream = async_nats::jetstream::new(client);
        jetstream.set_timeout(Duration::from_millis(
            settings.publish_timeout_millis.max(1),
        ));
        Ok(Self {
            jetstream,
            settings: settings.clone(),
            stream_ready: !settings.create_stream,
        })
    }

    async fn ensure_stream(&mut self) -> Result<(), SinkError> {
        if self.stream_ready {
            return Ok(());
        }
        let config = async_nats::jetstream::stream::Config {
            name: self.settings.stream.clone(),
            subjects: vec![format!("{}.>", self.settings.subject_prefix)],
            duplicate_window: Duration::from_secs(self.settings.duplicate_window_seconds),
            ..Default::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|err| SinkError(format!("creating the stream: {err}")))?;
        self.stream_ready = true;
        Ok(())
    }

    /// Publishes `event` and waits for the stream's acknowledgement (a duplicate counts as
    /// delivered).
    pub(super) async fn publish(
        &mut self,
        routing: &Routing,
        event: &str,
    ) -> Result<(), SinkError> {
        self.ensure_stream().await?;
        let kind = routing
            .kind
            .strip_prefix("imaging.")
            .unwrap_or(&routing.kind);
        let subject = format!(
            "{}.{}.{kind}",
            self.settings.subject_prefix,
            subject_token(&routing.data.workspace)
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", routing.id.as_str());
        headers.insert("Content-Type", "application/cloudevents+json");
        let timeout = Duration::from_millis(self.settings.publish_timeout_millis.max(1));
        let ack = tokio::time::timeout(timeout, async {
            self.jetstream
                .publish_with_headers(subject, headers, event.to_owned().into())
                .await
                .map_err(|err| SinkError(format!("publishing: {err}")))?
                .await
                .map_err(|err| SinkError(format!("no acknowledgement: {err}")))
        })
        .await
        .map_err(|_| SinkError("no acknowledgement in time".to_owned()))?;
        ack.map(|_| ())
    }
}
