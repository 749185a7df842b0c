//! Operational endpoints: liveness (`/healthz`) and readiness (`/readyz`, the ingest
//! service's gRPC health check).

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::time::Duration;

/// How long `/readyz` waits for the ingest service's health check.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// OpenAPI tag of these routes.
const TAG: &str = "Operations";

/// `/healthz` and `/readyz`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = TAG,
    responses((status = 200, description = "Up", content_type = "text/plain", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The ingest service answers its health check with SERVING within one second.
#[utoipa::path(get, path = "/readyz", tag = TAG,
    responses((status = 200, description = "Ready", content_type = "text/plain", body = String),
        (status = 503, description = "The ingest service is not serving", content_type = "text/plain", body = String)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.ingest.is_ready(READY_TIMEOUT).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
