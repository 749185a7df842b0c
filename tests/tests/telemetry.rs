//! One upload through the gateway is one trace: the gateway's request span, the service's RPC
//! span and the storage span share a trace ID, and the upload counter is incremented with the
//! target kind and outcome. Uses the SDK's in-memory exporters; this test binary owns the global
//! tracing subscriber and meter provider.

#![allow(clippy::unwrap_used)]

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use imaging_e2e::fixtures::png;
use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upload_is_one_trace_from_gateway_to_storage_and_is_counted() {
    let spans = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let metrics = InMemoryMetricExporter::default();
    let meter = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(meter.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing::subscriber::set_global_default(imaging_telemetry::subscriber(
        "e2e",
        "info",
        std::io::sink,
        Some(&tracer),
    ))
    .unwrap();

    let stack = helpers::spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let response = stack
        .post_raw("/api/image/v1.0/receipt", &token, "image/png", png(32, 32))
        .await;
    assert_eq!(response.status(), 201);
    // A receipt processed asynchronously (Concur Receipts v4), followed until it is processed.
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(png(24, 24))
            .file_name("r.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let accepted = stack
        .http
        .post(stack.url("/receipts/v4/users/u1/image-only-receipts"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers()["location"].to_str().unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status: serde_json::Value = stack
            .get(&format!("/receipts/v4/status/{id}"), &token)
            .await
            .json()
            .await
            .unwrap();
        if status["status"] == "PROCESSED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    tracer.force_flush().unwrap();
    let finished = spans.get_finished_spans().unwrap();
    let find = |name: &str| {
        finished
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no span {name} in {:?}",
                    finished.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
                )
            })
    };
    let gateway = find("http_request");
    let service = find("imaging.v1.ImageIngest/UploadImage");
    let storage = find("storage.put");
    let trace = gateway.span_context.trace_id();
    assert_eq!(
        service.span_context.trace_id(),
        trace,
        "the service continues the gateway's trace"
    );
    assert_eq!(
        storage.span_context.trace_id(),
        trace,
        "the storage write is in the same trace"
    );
    assert!(
        finished
            .iter()
            .any(|s| s.name == "pipeline" && s.span_context.trace_id() == trace),
        "pipeline step traced"
    );

    meter.force_flush().unwrap();
    let exported = metrics.get_finished_metrics().unwrap();
    let total = |name: &str, attribute: Option<(&str, &str)>| -> u64 {
        let mut total = 0;
        for resource in &exported {
            for scope in resource.scope_metrics() {
                for metric in scope.metrics().filter(|m| m.name() == name) {
                    if let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() {
                        for point in sum.data_points() {
                            let matches = attribute.is_none_or(|(key, value)| {
                                point.attributes().any(|kv| {
                                    kv.key.as_str() == key
                                        && kv.value == Value::from(value.to_owned())
                                })
                            });
                            if matches {
                                total = total.max(point.value());
                            }
                        }
                    }
                }
            }
        }
        total
    };
    assert_eq!(total("imaging.jobs.accepted", None), 1);
    assert_eq!(total("imaging.jobs.attempts", None), 1);
    assert_eq!(
        total("imaging.jobs.finished", Some(("status", "PROCESSED"))),
        1
    );
    let mut counted = 0;
    for resource in &exported {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == "imaging.uploads") {
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() {
                    for point in sum.data_points() {
                        let attrs: Vec<(String, Value)> = point
                            .attributes()
                            .map(|kv| (kv.key.to_string(), kv.value.clone()))
                            .collect();
                        if attrs.contains(&("kind".into(), Value::from("RECEIPT")))
                            && attrs.contains(&("outcome".into(), Value::from("ok")))
                        {
                            counted = counted.max(point.value());
                        }
                    }
                }
            }
        }
    }
    assert_eq!(
        counted, 1,
        "imaging.uploads{{kind=RECEIPT,outcome=ok}} == 1"
    );
}
