//! Telemetry shared by the ingest service and the gateway: a `tracing` subscriber (plain or JSON
//! logs that carry the trace ID), OpenTelemetry traces and metrics exported over OTLP when the
//! standard `OTEL_*` variables ask for it, and W3C trace context carried in gRPC metadata so one
//! trace spans gateway -> service -> storage. Also the shutdown signal both processes wait for.

mod propagation;

pub use propagation::{extract, inject, trace_id};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Flushes and shuts the exporters down when dropped (at process exit).
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take() {
            let _ = tracer.shutdown();
        }
        if let Some(meter) = self.meter.take() {
            let _ = meter.shutdown();
        }
    }
}

/// True when the standard variables ask for OTLP export (an endpoint is set, the SDK is not
/// disabled).
pub fn otlp_enabled() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let endpoint = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    endpoint && !disabled
}

/// A resource naming the service (`OTEL_SERVICE_NAME` wins over `default_name`).
pub fn resource(default_name: &str) -> Resource {
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| default_name.to_owned());
    Resource::builder().with_service_name(name).build()
}

/// Installs logging and, if configured, OTLP traces and metrics for the process `name`.
/// Logs honour `RUST_LOG` (else `default_filter`) and `LOG_FORMAT=json`.
pub fn init(name: &str, default_filter: &str) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut guard = TelemetryGuard::default();
    if otlp_enabled() {
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource(name))
            .build();
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()?;
        let meter = SdkMeterProvider::builder()
            .with_periodic_exporter(metrics)
            .with_resource(resource(name))
            .build();
        opentelemetry::global::set_tracer_provider(tracer.clone());
        opentelemetry::global::set_meter_provider(meter.clone());
        guard.tracer = Some(tracer);
        guard.meter = Some(meter);
    }
    let subscriber = subscriber(name, default_filter, std::io::stdout, guard.tracer.as_ref());
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(guard)
}

/// A subscriber writing logs to `sink`, with an OpenTelemetry layer if `tracer` is given.
/// Tests pass their own sink (e.g. `std::io::sink`) and in-memory provider.
pub fn subscriber<Sink>(
    name: &str,
    default_filter: &str,
    sink: Sink,
    tracer: Option<&SdkTracerProvider>,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let otel = tracer.map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(name.to_owned()))
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        Box::new(registry.with(json_logs(sink)))
    } else {
        Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(sink)))
    }
}

fn json_logs<S, Sink>(sink: Sink) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(sink)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, draining");
}
