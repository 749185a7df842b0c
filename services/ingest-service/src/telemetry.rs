//! The service's metrics (OpenTelemetry instruments on the global meter provider). Spans are
//! made per RPC in `grpc::layer`; logging and exporters are set up by `imaging_telemetry::init`.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};

/// Instruments of the ingest service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `imaging.uploads`: finished uploads by `kind` and `outcome` (`ok` or the error reason).
    pub uploads: Counter<u64>,
    /// `imaging.upload.bytes_received`: bytes received in upload streams.
    pub bytes_received: Counter<u64>,
    /// `imaging.upload.bytes_stored`: bytes written to storage.
    pub bytes_stored: Counter<u64>,
    /// `imaging.upload.duration`: seconds from the first message to the answer.
    pub upload_duration: Histogram<f64>,
    /// `imaging.conversion.duration`: seconds spent in pipeline steps, by `step`.
    pub conversion_duration: Histogram<f64>,
    /// `imaging.quota.rejections`: uploads refused for quota.
    pub quota_rejections: Counter<u64>,
    /// `imaging.uploads.in_flight`: uploads being received or processed.
    pub in_flight: UpDownCounter<i64>,
    /// `imaging.sessions.started`: resumable upload sessions started.
    pub sessions_started: Counter<u64>,
    /// `imaging.sessions.completed`: resumable upload sessions completed.
    pub sessions_completed: Counter<u64>,
    /// `imaging.sessions.expired`: sessions removed by the janitor when they expired.
    pub sessions_expired: Counter<u64>,
    /// `imaging.sessions.bytes_committed`: bytes committed to sessions.
    pub session_bytes: Counter<u64>,
    /// `imaging.jobs.accepted`: receipts accepted for asynchronous processing.
    pub jobs_accepted: Counter<u64>,
    /// `imaging.jobs.finished`: jobs ended, by `status` (`PROCESSED` or `FAILED`).
    pub jobs_finished: Counter<u64>,
    /// `imaging.jobs.attempts`: job attempts started (a retry and a takeover count).
    pub job_attempts: Counter<u64>,
    /// `imaging.jobs.queued`: jobs in the shared queue (held, due or waiting for a retry), as
    /// this replica last read it.
    pub jobs_queued: Gauge<u64>,
    /// `imaging.events.delivered`: events delivered, by `sink` (`nats`, `webhook`).
    pub events_delivered: Counter<u64>,
    /// `imaging.events.failures`: failed deliveries (retried), by `sink`.
    pub event_failures: Counter<u64>,
    /// `imaging.events.pending`: events waiting in the outboxes, as this replica last counted.
    pub events_pending: Gauge<u64>,
}

impl Metrics {
    /// Instruments on the current global meter provider.
    pub fn global() -> Self {
        Self::new(&opentelemetry::global::meter("imaging-ingest"))
    }

    /// Instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            uploads: meter
                .u64_counter("imaging.uploads")
                .with_description("Finished uploads by target kind and outcome")
                .build(),
            bytes_received: meter
                .u64_counter("imaging.upload.bytes_received")
                .with_unit("By")
                .build(),
            bytes_stored: meter
                .u64_counter("imaging.upload.bytes_stored")
                .with_unit("By")
                .build(),
            upload_duration: meter
                .f64_histogram("imaging.upload.duration")
                .with_unit("s")
                .build(),
            conversion_duration: meter
                .f64_histogram("imaging.conversion.duration")
                .with_unit("s")
                .build(),
            quota_rejections: meter.u64_counter("imaging.quota.rejections").build(),
            in_flight: meter
                .i64_up_down_counter("imaging.uploads.in_flight")
                .build(),
            sessions_started: meter.u64_counter("imaging.sessions.started").build(),
            sessions_completed: meter.u64_counter("imaging.sessions.completed").build(),
            sessions_expired: meter.u64_counter("imaging.sessions.expired").build(),
            session_bytes: meter
                .u64_counter("imaging.sessions.bytes_committed")
                .with_unit("By")
                .build(),
            jobs_accepted: meter
                .u64_counter("imaging.jobs.accepted")
                .with_description("Receipts accepted for asynchronous processing")
                .build(),
            jobs_finished: meter
                .u64_counter("imaging.jobs.finished")
                .with_description("Asynchronous jobs ended, by status")
                .build(),
            job_attempts: meter
                .u64_counter("imaging.jobs.attempts")
                .with_description("Asynchronous job attempts started")
                .build(),
            jobs_queued: meter
                .u64_gauge("imaging.jobs.queued")
                .with_description("Jobs in the shared queue")
                .build(),
            events_delivered: meter
                .u64_counter("imaging.events.delivered")
                .with_description("Events delivered, by sink")
                .build(),
            event_failures: meter
                .u64_counter("imaging.events.failures")
                .with_description("Event deliveries that failed and will be retried, by sink")
                .build(),
            events_pending: meter
                .u64_gauge("imaging.events.pending")
                .with_description("Events waiting in the outboxes")
                .build(),
        }
    }

    /// Records a finished upload.
    pub fn upload_finished(&self, kind: &str, outcome: &str, seconds: f64) {
        let attributes = [
            KeyValue::new("kind", kind.to_owned()),
            KeyValue::new("outcome", outcome.to_owned()),
        ];
        self.uploads.add(1, &attributes);
        self.upload_duration.record(seconds, &attributes);
        if outcome == imaging_proto::v1::ErrorReason::QuotaExceeded.as_str_name() {
            self.quota_rejections
                .add(1, &[KeyValue::new("kind", kind.to_owned())]);
        }
    }
}
