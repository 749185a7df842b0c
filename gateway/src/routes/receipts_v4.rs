//! Concur Receipts v4, image-only receipts: an upload is accepted with `202` once its file is
//! stored and queued, and processed later by the ingest service's workers; the client follows
//! the processing-status link. `userId` is the caller's `sub`, or another user of the caller's
//! workspace for the admin roles (the ingest service decides; anyone else gets 403). Errors are
//! JSON `{"code", "message"}`.
//!
//! Links are absolute paths on this gateway (no host taken from the request).

use super::receipts_v3::{bad_query, is_login_id, receipt, urlencode};
use crate::error::{Dialect, ErrorBody, Failure, in_dialect};
use crate::headers;
use crate::state::AppState;
use crate::upload::{Accepts, UploadBody};
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use imaging_proto::v1::ProcessingStatus;
use serde::{Deserialize, Serialize};

/// OpenAPI tag of these routes.
const TAG: &str = "Concur Receipts v4";

/// The v4 routes. Bodies are streamed, so axum's body limit is off; [`UploadBody`] enforces
/// the dialect's byte limit itself.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/receipts/", get(index))
        .route(
            "/receipts/v4/users/{user_id}/image-only-receipts",
            get(list).post(create),
        )
        .route("/receipts/v4/status/{id}", get(status))
        .route("/receipts/v4/image-only-receipts/{id}", get(metadata))
        .route(
            "/receipts/v4/image-only-receipts/{id}/image",
            get(receipt_image),
        )
        .route("/receipts/v4/images/{id}", get(image))
        .layer(DefaultBodyLimit::disable());
    in_dialect(routes, |_| Dialect::ReceiptsV4)
}

/// One link of the service index.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Link {
    /// What it is.
    rel: &'static str,
    /// The HTTP method.
    method: &'static str,
    /// The path (`{...}` are parameters).
    href: &'static str,
    /// True if `href` has parameters to fill in.
    #[serde(rename = "isTemplated")]
    is_templated: bool,
}

/// The service index.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceIndex {
    /// What this service offers.
    links: Vec<Link>,
}

/// One line of a receipt's processing log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogEntry {
    /// `INFO`, `WARNING` or `ERROR`.
    #[serde(rename = "logLevel")]
    log_level: String,
    /// What happened.
    message: String,
    /// When (RFC 3339, UTC).
    timestamp: String,
}

/// Where a receipt is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProcessingStatusDocument {
    /// `ACCEPTED`, `PROCESSING`, `PROCESSED` or `FAILED`.
    status: &'static str,
    /// One line per step and attempt, oldest first.
    logs: Vec<LogEntry>,
}

/// An image-only receipt's metadata.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReceiptImageMetadata {
    /// When it was received (RFC 3339, UTC).
    #[serde(rename = "dateTimeReceived")]
    date_time_received: String,
    /// Receipt ID.
    id: String,
    /// The path of its image on this gateway.
    image: String,
    /// Its owner (login ID).
    #[serde(rename = "userId")]
    user_id: String,
    /// Once processed: earlier images of the workspace it duplicates (`imageId`, `match`:
    /// `exact` or `perceptual`, `distance`), at most 5.
    duplicates: Vec<super::DuplicateJson>,
}

/// A page of a user's receipts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReceiptImagesList {
    /// The receipts, newest first.
    #[serde(rename = "receiptsImages")]
    receipts_images: Vec<ReceiptImageMetadata>,
    /// The path of the next page; `null` on the last.
    next: Option<String>,
}

/// `?limit=&offset=` of the list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Receipts per page, 1 to 100 (default 25).
    limit: Option<String>,
    /// The opaque cursor taken from `next`; absent for the first page.
    offset: Option<String>,
}

/// Error responses of these routes: JSON `{"code", "message"}`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Errors {
    /// Bad ID or `limit`, no `image` field.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No or invalid token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Another user's receipts without an admin role, or another user's receipt.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such receipt (in this workspace), or not processed (yet).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Over 25 MB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Declared type not accepted.
    #[response(status = 415)]
    UnsupportedType(ErrorBody),
    /// The file is not of its declared type.
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Storage or quota store unavailable; retry (`Retry-After`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// The workspace quota is full.
    #[response(status = 507)]
    QuotaExceeded(ErrorBody),
}

fn image_path(id: &str) -> String {
    format!("/receipts/v4/images/{id}")
}

fn status_path(id: &str) -> String {
    format!("/receipts/v4/status/{id}")
}

/// Unix ms as RFC 3339 UTC with milliseconds.
fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A `userId` path segment: a login ID the service checks.
fn user_of(path: Result<Path<String>, PathRejection>) -> Result<String, Failure> {
    let Path(user) =
        path.map_err(|rejection| Failure::invalid_id("user ID").with_detail(rejection))?;
    if !is_login_id(&user) {
        return Err(Failure::invalid_id("user ID"));
    }
    Ok(user)
}

/// A receipt ID path segment.
fn receipt_id(path: Result<Path<String>, PathRejection>) -> Result<String, Failure> {
    let Path(id) =
        path.map_err(|rejection| Failure::invalid_id("receipt ID").with_detail(rejection))?;
    Ok(crate::ids::check(&id, "receipt ID")?.to_owned())
}

/// The service index: what this service offers and where.
#[utoipa::path(get, path = "/receipts/", tag = TAG,
    responses((status = 200, description = "`links`: `rel`, `method`, `href`, `isTemplated`.",
        content_type = "application/json", body = ServiceIndex)))]
pub async fn index() -> Response {
    let link = |rel, method, href, is_templated| Link {
        rel,
        method,
        href,
        is_templated,
    };
    axum::Json(ServiceIndex {
        links: vec![
            link(
                "image-only-receipts",
                "POST",
                "/receipts/v4/users/{userId}/image-only-receipts",
                true,
            ),
            link(
                "image-only-receipts",
                "GET",
                "/receipts/v4/users/{userId}/image-only-receipts",
                true,
            ),
            link(
                "image-only-receipt",
                "GET",
                "/receipts/v4/image-only-receipts/{receiptId}",
                true,
            ),
            link("image", "GET", "/receipts/v4/images/{receiptId}", true),
            link(
                "processing-status",
                "GET",
                "/receipts/v4/status/{receiptId}",
                true,
            ),
        ],
    })
    .into_response()
}

/// A new image-only receipt for `userId` from the form's `image` field: `202` once the file is
/// stored and queued; processed later (follow the `processing-status` link).
#[utoipa::path(post, path = "/receipts/v4/users/{userId}/image-only-receipts", tag = TAG,
    params(("userId" = String, Path, description = "Login ID of the receipt's owner: the caller, or (admin roles) another user of the workspace")),
    request_body(description = "A form with the file in field `image` (PNG, JPEG, TIFF, GIF, PDF, HEIC; at most 25 MB).",
        content(("multipart/form-data"))),
    responses((status = 202, description = "Accepted, no body. `Location`: the image; `Link: <status>; rel=\"processing-status\"`."),
        Errors))]
pub async fn create(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Failure> {
    headers::required_token(request.headers())?;
    let user = user_of(path)?;
    if super::resumable::requested(request.headers()) {
        let answer = super::resumable::Answer::ReceiptsV4;
        return super::resumable::create(&state, request, receipt(""), user, answer).await;
    }
    let body = UploadBody::read(request, Accepts::Form("image"), state.v4_limits).await?;
    let queued = body
        .processed_later()
        .forward(&state.ingest, receipt(""), user)
        .await?;
    Ok(accepted(&queued.image_id))
}

/// `202 Accepted` for the receipt `id`: no body, `Location` (its image) and the
/// processing-status `Link`.
pub(crate) fn accepted(id: &str) -> Response {
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&image_path(id)) {
        headers.insert(header::LOCATION, location);
    }
    if let Ok(link) =
        HeaderValue::from_str(&format!("<{}>; rel=\"processing-status\"", status_path(id)))
    {
        headers.insert(header::LINK, link);
    }
    response
}

/// Where a receipt is, with its log (kept 14 days).
#[utoipa::path(get, path = "/receipts/v4/status/{id}", tag = TAG,
    params(("id" = String, Path, description = "Receipt ID")),
    responses((status = 200, description = "`status` and `logs`.", content_type = "application/json",
        body = ProcessingStatusDocument), Errors))]
pub async fn status(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let id = receipt_id(path)?;
    let info = state
        .ingest
        .processing_status(headers::bearer_token(&headers), &id)
        .await?;
    let status = match ProcessingStatus::try_from(info.status) {
        Ok(ProcessingStatus::Processing) => "PROCESSING",
        Ok(ProcessingStatus::Processed) => "PROCESSED",
        Ok(ProcessingStatus::Failed) => "FAILED",
        _ => "ACCEPTED",
    };
    let logs = info
        .logs
        .into_iter()
        .map(|line| LogEntry {
            log_level: line.level,
            message: line.message,
            timestamp: rfc3339(line.timestamp_ms),
        })
        .collect();
    let mut response = axum::Json(ProcessingStatusDocument { status, logs }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `userId`'s image-only receipts, newest first, a page at a time.
#[utoipa::path(get, path = "/receipts/v4/users/{userId}/image-only-receipts", tag = TAG,
    params(("userId" = String, Path, description = "Login ID: the caller, or (admin roles) another user of the workspace"), ListQuery),
    responses((status = 200, description = "`receiptsImages` and `next` (`null` on the last page).",
        content_type = "application/json", body = ReceiptImagesList), Errors))]
pub async fn list(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let user = user_of(path)?;
    let Query(query) = query.map_err(bad_query)?;
    let limit = super::receipts_v3::page_limit(query.limit.as_deref())?;
    let page = state
        .ingest
        .list_receipts(
            headers::bearer_token(&headers),
            &user,
            i32::try_from(limit).unwrap_or(25),
            query.offset.as_deref().unwrap_or_default(),
        )
        .await?;
    let receipts_images = page
        .images
        .into_iter()
        .map(|listed| ReceiptImageMetadata {
            date_time_received: rfc3339(listed.listed_at_ms),
            image: image_path(&listed.image_id),
            id: listed.image_id,
            user_id: user.clone(),
            duplicates: Vec::new(),
        })
        .collect();
    let next = (!page.next_page_token.is_empty()).then(|| {
        format!(
            "/receipts/v4/users/{}/image-only-receipts?limit={limit}&offset={}",
            urlencode(&user),
            urlencode(&page.next_page_token)
        )
    });
    Ok(axum::Json(ReceiptImagesList {
        receipts_images,
        next,
    })
    .into_response())
}

/// One receipt's metadata: once processed from its image, before that from its processing
/// status (its image answers 404 until then).
#[utoipa::path(get, path = "/receipts/v4/image-only-receipts/{id}", tag = TAG,
    params(("id" = String, Path, description = "Receipt ID")),
    responses((status = 200, description = "The receipt's metadata.", content_type = "application/json",
        body = ReceiptImageMetadata), Errors))]
pub async fn metadata(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let id = receipt_id(path)?;
    let token = headers::bearer_token(&headers);
    let (received_ms, owner, duplicates) =
        match state.ingest.get_image(token, receipt(&id), "").await {
            Ok(info) => (
                info.listed_at_ms,
                info.owner,
                super::duplicates_json(&info.duplicates),
            ),
            Err(status) if status.code() == tonic::Code::NotFound => {
                let job = state.ingest.processing_status(token, &id).await?;
                if job.status == i32::from(ProcessingStatus::Failed) {
                    return Err(Failure::from(status));
                }
                (job.received_at_ms, job.owner, Vec::new())
            }
            Err(status) => return Err(Failure::from(status)),
        };
    Ok(axum::Json(ReceiptImageMetadata {
        date_time_received: rfc3339(received_ms),
        image: image_path(&id),
        id,
        user_id: owner,
        duplicates,
    })
    .into_response())
}

/// The stored image (as received; an image over 2,200 px reduced, TIFF as PDF): a redirect
/// to its expiring URL, once processed.
#[utoipa::path(get, path = "/receipts/v4/images/{id}", tag = TAG,
    params(("id" = String, Path, description = "Receipt ID")),
    responses((status = 302, description = "`Location`: the image's expiring URL."), Errors))]
pub async fn image(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let id = receipt_id(path)?;
    let info = state
        .ingest
        .get_image(headers::bearer_token(&headers), receipt(&id), "")
        .await?;
    let location = HeaderValue::from_str(&info.url)
        .map_err(|err| Failure::from(tonic::Status::internal("image URL")).with_detail(err))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// The same image at the path the receipt's metadata names.
#[utoipa::path(get, path = "/receipts/v4/image-only-receipts/{id}/image", tag = TAG,
    params(("id" = String, Path, description = "Receipt ID")),
    responses((status = 302, description = "`Location`: the image's expiring URL."), Errors))]
pub async fn receipt_image(
    state: State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    image(state, path, headers).await
}
