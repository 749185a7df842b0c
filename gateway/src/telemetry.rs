//! Request tracing: [`trace_request`] gives every request a span (joined to the caller's trace
//! by `imaging_telemetry`) and one completion line. The subscriber itself is installed by
//! `imaging_telemetry::init` in `main`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// Middleware: runs the request inside an `http_request` span (method, matched route) and logs
/// its status and latency when the response is ready.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "http_request",
        otel.kind = "server",
        method = %request.method(),
        route = %route,
        trace_id = tracing::field::Empty,
    );
    span.record("trace_id", imaging_telemetry::trace_id(&span));
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}
