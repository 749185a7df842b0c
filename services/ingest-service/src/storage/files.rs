//! The file server of the filesystem backend: serves objects at HMAC-signed, expiring URLs
//! (`/files/{key}?expires=..&signature=..`), the stand-in for S3 presigned GETs. Objects are
//! streamed from disk, never read whole into memory, and sent with headers that stop browsers
//! from sniffing or rendering them as something else.

use super::FsStore;
use super::signed_url::UrlSigner;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
struct Signed {
    expires: u64,
    signature: String,
}

#[derive(Debug, Clone)]
struct FileState {
    store: Arc<FsStore>,
    signer: UrlSigner,
}

/// The router serving signed file URLs from `store`.
pub fn router(store: Arc<FsStore>) -> Router {
    let signer = store.signer().clone();
    Router::new()
        .route("/files/{*key}", get(serve))
        .with_state(FileState { store, signer })
}

fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("pdf") => "application/pdf",
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

async fn serve(
    State(state): State<FileState>,
    Path(key): Path<String>,
    Query(signed): Query<Signed>,
) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if !state
        .signer
        .verify(&key, signed.expires, &signed.signature, now)
    {
        return (StatusCode::FORBIDDEN, "invalid or expired signature").into_response();
    }
    match state.store.open(&key).await {
        Ok(Some((bytes, length))) => {
            let name = key.rsplit('/').next().unwrap_or("file");
            let disposition = match content_type(&key) {
                // A PDF opened in the browser runs in this origin; save it instead.
                "application/pdf" => format!("attachment; filename=\"{name}\""),
                _ => format!("inline; filename=\"{name}\""),
            };
            let body = axum::body::Body::from_stream(bytes);
            (
                [
                    (header::CONTENT_TYPE, content_type(&key).to_owned()),
                    (header::CONTENT_LENGTH, length.to_string()),
                    (header::CONTENT_DISPOSITION, disposition),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                    (header::CACHE_CONTROL, "private, max-age=60".to_owned()),
                ],
                body,
            )
                .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "not found").into_response(),
        Err(err) => {
            tracing::error!(error = %err, "file server read failed");
            (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response()
        }
    }
}
