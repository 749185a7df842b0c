//! What every gRPC request goes through before it reaches a service: one server span per RPC,
//! parented on the caller's trace context, and request bodies whose client resets are errors.

use http::Request;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

/// A server span for the RPC `request` names, parented on the caller's `traceparent`, with its
/// trace ID as a field so every log line inside it carries the trace. The upload flow fills in
/// `kind` and `outcome`.
pub fn rpc_span(request: &Request<()>) -> tracing::Span {
    let method = request.uri().path().trim_start_matches('/').to_owned();
    let span = tracing::info_span!(
        "rpc",
        otel.name = %method,
        otel.kind = "server",
        rpc.method = %method,
        trace_id = tracing::field::Empty,
        kind = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let metadata = MetadataMap::from_headers(request.headers().clone());
    imaging_telemetry::extract(&metadata, &span);
    span.record("trace_id", imaging_telemetry::trace_id(&span));
    span
}

/// Makes a client's reset of the request stream an error of the request body.
///
/// hyper reports an HTTP/2 `RST_STREAM` as a body error with the reset's reason, and tonic's
/// `Streaming` takes one with reason `CANCEL` (what a cancelled gRPC call sends) for a clean end
/// of the request stream: a cut-short upload would look complete. Renamed `ABORTED` here, the
/// reset fails the stream, and nothing is stored.
pub fn surface_resets(request: Request<Body>) -> Request<Body> {
    request.map(|body| {
        Body::new(http_body_util::BodyExt::map_err(body, |status: Status| {
            if status.code() == Code::Cancelled {
                Status::aborted("the client reset the request stream")
            } else {
                status
            }
        }))
    })
}
