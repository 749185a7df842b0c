//! What every gRPC request goes through before it reaches a service: one server span per RPC,
//! parented on the caller's trace context; request bodies whose client resets are errors; and
//! the token checked from the headers before any body is read.

use crate::auth::Verifier;
use http::Request;
use std::sync::Arc;
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

/// The largest unary request message body (all RPCs but `UploadImage` need a few hundred bytes).
pub const MAX_UNARY_BODY_BYTES: usize = 64 * 1024;

/// RPC paths served without a token: health checks and reflection.
const OPEN_PATHS: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The upload RPC, the one whose body is large.
const UPLOAD_PATH: &str = "/imaging.v1.ImageIngest/UploadImage";

/// Checks the bearer token from the request headers before any of the body is read: a request
/// without a valid token is answered at once, unread. The verified [`Claims`] go into the
/// request's extensions for the handlers. Bodies of every RPC but `UploadImage` are capped at
/// [`MAX_UNARY_BODY_BYTES`].
#[derive(Debug, Clone)]
pub struct AuthenticateLayer {
    verifier: Arc<Verifier>,
}

impl AuthenticateLayer {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        AuthenticateLayer {
            verifier: Arc::new(verifier),
        }
    }
}

impl<S> tower::Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service of [`AuthenticateLayer`].
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S, B> tower::Service<Request<Body>> for Authenticate<S>
where
    S: tower::Service<Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let open = OPEN_PATHS.iter().any(|prefix| path.starts_with(prefix));
        let upload = path == UPLOAD_PATH;
        if !open {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok());
            match self.verifier.verify_header(header) {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                }
                Err(err) => {
                    let response = Status::from(err).into_http::<B>();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        if !upload {
            request = request.map(|body| {
                Body::new(http_body_util::BodyExt::map_err(
                    http_body_util::Limited::new(body, MAX_UNARY_BODY_BYTES),
                    |err| match err.downcast::<Status>() {
                        Ok(status) => *status,
                        Err(_) => Status::resource_exhausted("the request message is too large"),
                    },
                ))
            });
        }
        Box::pin(self.inner.call(request))
    }
}
