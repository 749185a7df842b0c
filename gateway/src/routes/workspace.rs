//! Workspace receipts (multipart in, JSON out): upload, read and delete an expense's receipt
//! image (stored as WebP), and the workspace's storage summary.

use crate::error::{Dialect, ErrorBody, Failure, in_dialect};
use crate::state::AppState;
use crate::upload::{Accepts, Limits, MULTIPART_ENVELOPE_BYTES, UploadBody};
use crate::{headers, ids};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use imaging_proto::v1::{Target, TargetKind};
use serde::Serialize;
use utoipa::ToSchema;

/// OpenAPI tag of these routes.
const TAG: &str = "Workspace receipts";

/// The workspace routes. The whole multipart body is capped at the file limit plus
/// [`MULTIPART_ENVELOPE_BYTES`]; the `file` field itself is counted exactly while streaming.
pub fn router(limits: Limits) -> Router<AppState> {
    let body_cap = limits
        .max_upload_bytes
        .saturating_add(MULTIPART_ENVELOPE_BYTES);
    let routes = Router::new()
        .route(
            "/api/v1/client/workspace/{workspaceId}/expenses/{expenseId}/receipt",
            get(get_receipt).post(upload_receipt).delete(delete_receipt),
        )
        .route(
            "/api/v1/workspace/{workspaceId}/storage/summary",
            get(storage_summary),
        )
        .layer(DefaultBodyLimit::max(
            usize::try_from(body_cap).unwrap_or(usize::MAX),
        ));
    in_dialect(routes, |_| Dialect::Workspace)
}

/// A stored receipt image.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptImage {
    /// Expiring URL of the image.
    pub url: String,
    /// Object key in storage.
    pub path: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Stored size in bytes.
    pub size_bytes: u64,
    /// Stored type (`image/webp`).
    pub content_type: String,
    /// Earlier images of the workspace this one duplicates (the same bytes or the same picture),
    /// at most 5; empty if none.
    pub duplicates: Vec<super::DuplicateJson>,
}

/// A workspace's storage use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSummary {
    /// Bytes stored.
    pub total_size_bytes: u64,
    /// The workspace's quota in bytes.
    pub quota_bytes: u64,
    /// `total_size_bytes / quota_bytes` in percent, rounded to 2 decimals.
    pub usage_percentage: f64,
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReceiptUpload {
    /// JPEG, PNG, WebP, HEIC, GIF or a one-page TIFF, at most 10 MB, stored as WebP. Other
    /// fields are ignored.
    #[schema(content_media_type = "application/octet-stream")]
    file: Vec<u8>,
}

/// Error responses (all JSON [`ErrorBody`]).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Errors {
    /// Bad ID format, missing `file` field, malformed request.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No or invalid token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Not owner or financial staff of the workspace.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown workspace or expense, or no image yet.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Over 10 MB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Type not accepted, corrupt or mismatched file.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Storage or quota store unavailable; retry (`Retry-After`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// The workspace quota is full.
    #[response(status = 507)]
    QuotaExceeded(ErrorBody),
}

/// Uploads (or replaces) the expense's receipt image; it is stored as WebP.
#[utoipa::path(post, path = "/api/v1/client/workspace/{workspaceId}/expenses/{expenseId}/receipt",
    tag = TAG,
    params(("workspaceId" = String, Path, description = "Workspace ID"),
        ("expenseId" = String, Path, description = "Expense ID")),
    request_body(content = inline(ReceiptUpload), content_type = "multipart/form-data"),
    responses((status = 201, description = "Stored", body = ReceiptImage), Errors))]
pub async fn upload_receipt(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, Failure> {
    let Path((workspace_id, expense_id)) = path.map_err(bad_path)?;
    let target = target(&workspace_id, &expense_id)?;
    if super::resumable::requested(request.headers()) {
        let answer = super::resumable::Answer::Workspace;
        return super::resumable::create(&state, request, target, String::new(), answer).await;
    }
    let body = UploadBody::read(request, Accepts::Form("file"), state.limits).await?;
    let token = body.token().map(str::to_owned);
    let stored = body
        .forward(&state.ingest, target.clone(), String::new())
        .await?;
    Ok(stored_answer(&state, token.as_deref(), target, stored)
        .await
        .into_response())
}

/// The answer to a stored upload: `201` and the image, with a fresh URL.
pub(crate) async fn stored_answer(
    state: &AppState,
    token: Option<&str>,
    target: Target,
    stored: imaging_proto::v1::UploadImageResponse,
) -> (StatusCode, Json<ReceiptImage>) {
    // The upload answer carries no URL; fetch one. The image is stored either way, so a
    // failure here still answers 201 (with an empty URL) rather than inviting a re-upload.
    let url = match state.ingest.get_image(token, target, "").await {
        Ok(info) => info.url,
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = %status.message(),
                "receipt stored but no URL could be fetched");
            String::new()
        }
    };
    (
        StatusCode::CREATED,
        Json(ReceiptImage {
            url,
            path: stored.path,
            width: stored.width,
            height: stored.height,
            size_bytes: stored.size_bytes,
            content_type: stored.content_type,
            duplicates: super::duplicates_json(&stored.duplicates),
        }),
    )
}

/// The expense's current receipt image, with a fresh URL.
#[utoipa::path(get, path = "/api/v1/client/workspace/{workspaceId}/expenses/{expenseId}/receipt",
    tag = TAG,
    params(("workspaceId" = String, Path, description = "Workspace ID"),
        ("expenseId" = String, Path, description = "Expense ID")),
    responses((status = 200, description = "The current image", body = ReceiptImage), Errors))]
pub async fn get_receipt(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<ReceiptImage>, Failure> {
    let Path((workspace_id, expense_id)) = path.map_err(bad_path)?;
    let target = target(&workspace_id, &expense_id)?;
    let info = state
        .ingest
        .get_image(headers::bearer_token(&headers), target, "")
        .await?;
    Ok(Json(ReceiptImage {
        url: info.url,
        path: info.path,
        width: info.width,
        height: info.height,
        size_bytes: info.size_bytes,
        content_type: info.content_type,
        duplicates: super::duplicates_json(&info.duplicates),
    }))
}

/// Deletes the expense's receipt image and releases its bytes from the quota.
#[utoipa::path(delete, path = "/api/v1/client/workspace/{workspaceId}/expenses/{expenseId}/receipt",
    tag = TAG,
    params(("workspaceId" = String, Path, description = "Workspace ID"),
        ("expenseId" = String, Path, description = "Expense ID")),
    responses((status = 204, description = "Deleted"), Errors))]
pub async fn delete_receipt(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, Failure> {
    let Path((workspace_id, expense_id)) = path.map_err(bad_path)?;
    let target = target(&workspace_id, &expense_id)?;
    state
        .ingest
        .delete_image(headers::bearer_token(&headers), target, "")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The workspace's stored bytes against its quota.
#[utoipa::path(get, path = "/api/v1/workspace/{workspaceId}/storage/summary", tag = TAG,
    params(("workspaceId" = String, Path, description = "Workspace ID")),
    responses((status = 200, description = "Usage", body = StorageSummary), Errors))]
pub async fn storage_summary(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<StorageSummary>, Failure> {
    let Path(workspace_id) = path.map_err(bad_path)?;
    let workspace_id = ids::check(&workspace_id, "workspace ID")?;
    let usage = state
        .ingest
        .get_usage(headers::bearer_token(&headers), workspace_id)
        .await?;
    Ok(Json(StorageSummary {
        total_size_bytes: usage.used_bytes,
        quota_bytes: usage.limit_bytes,
        usage_percentage: usage_percentage(usage.used_bytes, usage.limit_bytes),
    }))
}

/// `used / limit` in percent, rounded to 2 decimals; 0 when there is no limit.
pub fn usage_percentage(used: u64, limit: u64) -> f64 {
    if limit == 0 {
        return 0.0;
    }
    let percent = used as f64 * 100.0 / limit as f64;
    (percent * 100.0).round() / 100.0
}

fn target(workspace_id: &str, expense_id: &str) -> Result<Target, Failure> {
    Ok(Target {
        kind: TargetKind::WorkspaceExpense.into(),
        id: ids::check(expense_id, "expense ID")?.to_owned(),
        workspace_id: ids::check(workspace_id, "workspace ID")?.to_owned(),
    })
}

fn bad_path(rejection: PathRejection) -> Failure {
    Failure::invalid_id("path").with_detail(rejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_a_percentage_rounded_to_two_decimals() {
        assert_eq!(usage_percentage(1, 3), 33.33);
        assert_eq!(usage_percentage(2, 3), 66.67);
        assert_eq!(usage_percentage(0, 1_073_741_824), 0.0);
        assert_eq!(usage_percentage(536_870_912, 1_073_741_824), 50.0);
        assert_eq!(usage_percentage(1_073_741_824, 1_073_741_824), 100.0);
        assert_eq!(usage_percentage(1, 100_000), 0.0);
        assert_eq!(usage_percentage(5, 1_000), 0.5);
        assert_eq!(usage_percentage(7, 0), 0.0);
    }

    #[test]
    fn summary_json_uses_the_documented_names() {
        let json = serde_json::to_value(StorageSummary {
            total_size_bytes: 1,
            quota_bytes: 3,
            usage_percentage: usage_percentage(1, 3),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"totalSizeBytes": 1, "quotaBytes": 3, "usagePercentage": 33.33})
        );
    }
}
