//! Concur Receipt Image v3: the caller's loose receipts, listed a page at a time, created,
//! read, appended to and deleted, under `/api/v3.0/expense/receiptimages`. XML by default, JSON
//! with `Accept: application/json` (same field names). Every route takes an optional `user`
//! (a login ID of the caller's workspace) that only an admin may use; the ingest service
//! decides who may act for whom.
//!
//! `URI` and `NextPage` are absolute paths on this gateway (no host taken from the request).

use crate::error::{Dialect, Failure, in_dialect};
use crate::state::AppState;
use crate::upload::{Accepts, UploadBody};
use crate::{headers, ids, xml};
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use imaging_proto::v1::{Target, TargetKind};
use serde::Deserialize;

/// OpenAPI tag of these routes.
const TAG: &str = "Concur Receipt Image v3";
/// The collection's path.
const BASE: &str = "/api/v3.0/expense/receiptimages";
/// Items per page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 25;
/// The most items per page.
const MAX_LIMIT: u32 = 100;

/// The v3 routes. Bodies are streamed, so axum's body limit is off; [`UploadBody`]
/// enforces the byte limit itself.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route(BASE, get(list).post(create))
        .route(
            "/api/v3.0/expense/receiptimages/{id}",
            get(read).put(append).delete(remove),
        )
        .layer(DefaultBodyLimit::disable());
    in_dialect(routes, dialect)
}

/// `?user=`: the user a request acts for (admins only).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Login ID (JWT `sub`) of a user of the caller's workspace; admin roles only.
    user: Option<String>,
}

/// `?offset=&limit=&user=` of the list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The opaque cursor taken from `NextPage`; absent for the first page.
    offset: Option<String>,
    /// Items per page, 1 to 100 (default 25).
    limit: Option<String>,
    /// Login ID (JWT `sub`) of a user of the caller's workspace; admin roles only.
    user: Option<String>,
}

/// One receipt image of a list, or the answer to a create or an append.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReceiptImageItem {
    /// Image ID.
    #[serde(rename = "ID")]
    id: String,
    /// Its path on this gateway.
    #[serde(rename = "URI")]
    uri: String,
    /// The answer to a create or an append in JSON: earlier images of the workspace it
    /// duplicates (`imageId`, `match`: `exact` or `perceptual`, `distance`), at most 5.
    #[serde(rename = "Duplicates", skip_serializing_if = "Option::is_none")]
    duplicates: Option<Vec<super::DuplicateJson>>,
}

/// A page of the list.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReceiptImagesPage {
    /// The images, newest first.
    #[serde(rename = "Items")]
    items: Vec<ReceiptImageItem>,
    /// The path of the next page; empty on the last.
    #[serde(rename = "NextPage")]
    next_page: String,
}

/// `GET` by ID in JSON: the v1 `<Image>` fields.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ImageDocument {
    /// Image ID.
    #[serde(rename = "Id")]
    id: String,
    /// Expiring URL of the image.
    #[serde(rename = "Url")]
    url: String,
}

/// Error responses of these routes: the v1 `<Error>` document, or with
/// `Accept: application/json`, `{"Message", "Server-Time", "Id"}`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Errors {
    /// Bad ID, `limit` or `offset`, missing file.
    #[response(status = 400, content_type = "application/xml")]
    BadRequest(String),
    /// No or invalid token.
    #[response(status = 401, content_type = "application/xml")]
    Unauthorized(String),
    /// `user` given by a caller without an admin role, or another user's image.
    #[response(status = 403, content_type = "application/xml")]
    Forbidden(String),
    /// No such image (of this user, in this workspace).
    #[response(status = 404, content_type = "application/xml")]
    NotFound(String),
    /// Over 10 MB, or an append past the consolidated PDF's bounds.
    #[response(status = 413, content_type = "application/xml")]
    TooLarge(String),
    /// Declared type not accepted.
    #[response(status = 415, content_type = "application/xml")]
    UnsupportedType(String),
    /// Corrupt, mismatched or encrypted file.
    #[response(status = 422, content_type = "application/xml")]
    Unprocessable(String),
    /// Storage or quota store unavailable; retry (`Retry-After`).
    #[response(status = 503, content_type = "application/xml")]
    Unavailable(String),
    /// The workspace quota is full.
    #[response(status = 507, content_type = "application/xml")]
    QuotaExceeded(String),
}

/// True if the caller asked for JSON.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

/// Failures as the caller asked: JSON, or the `<Error>` document.
fn dialect(headers: &HeaderMap) -> Dialect {
    if wants_json(headers) {
        Dialect::ConcurJson
    } else {
        Dialect::Concur
    }
}

fn item_uri(id: &str) -> String {
    format!("{BASE}/{id}")
}

/// A loose receipt as a target (no ID: a new one).
pub(crate) fn receipt(id: &str) -> Target {
    Target {
        kind: TargetKind::Receipt.into(),
        id: id.to_owned(),
        workspace_id: String::new(),
    }
}

/// True if `user` may be a login ID (the service decides who it is and who may act for them).
pub(crate) fn is_login_id(user: &str) -> bool {
    !user.is_empty() && user.len() <= 256 && !user.chars().any(char::is_control)
}

/// The `user` parameter, if given: a login ID the service checks.
fn user_of(user: Option<&String>) -> Result<String, Failure> {
    match user.map(String::as_str) {
        None => Ok(String::new()),
        Some(user) if !is_login_id(user) => Err(Failure::invalid_request(
            "The user is not a valid login ID.",
        )),
        Some(user) => Ok(user.to_owned()),
    }
}

pub(crate) fn bad_query(rejection: QueryRejection) -> Failure {
    Failure::invalid_request("The query string is malformed.").with_detail(rejection)
}

fn bad_path(rejection: PathRejection) -> Failure {
    Failure::invalid_id("path").with_detail(rejection)
}

/// Renders an item (create, append) in the caller's format.
/// The answer to a stored upload: the item, `201` for a new receipt, `200` for an append.
pub(crate) fn answer(
    created: bool,
    id: &str,
    json: bool,
    duplicates: &[imaging_proto::v1::Duplicate],
) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    item_response(status, id, json, duplicates)
}

fn item_response(
    status: StatusCode,
    id: &str,
    json: bool,
    duplicates: &[imaging_proto::v1::Duplicate],
) -> Response {
    let uri = item_uri(id);
    let mut response = if json {
        (
            status,
            axum::Json(ReceiptImageItem {
                id: id.to_owned(),
                uri: uri.clone(),
                duplicates: Some(super::duplicates_json(duplicates)),
            }),
        )
            .into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "application/xml")],
            xml::receipt_image(id, &uri, true),
        )
            .into_response()
    };
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&uri)
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The user's receipt images, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v3.0/expense/receiptimages", tag = TAG,
    params(ListQuery),
    responses((status = 200, description = "`Items` (each `ID`, `URI`) and `NextPage` (empty on the last page).",
        content_type = "application/xml", body = ReceiptImagesPage), Errors))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let json = wants_json(&headers);
    let Query(query) = query.map_err(bad_query)?;
    let limit = page_limit(query.limit.as_deref())?;
    let user = user_of(query.user.as_ref())?;
    let offset = query.offset.unwrap_or_default();
    let page = state
        .ingest
        .list_receipts(
            headers::bearer_token(&headers),
            &user,
            i32::try_from(limit).unwrap_or(25),
            &offset,
        )
        .await?;
    let items: Vec<(String, String)> = page
        .images
        .into_iter()
        .map(|image| {
            let uri = item_uri(&image.image_id);
            (image.image_id, uri)
        })
        .collect();
    let next = if page.next_page_token.is_empty() {
        String::new()
    } else {
        let mut next = format!(
            "{BASE}?limit={limit}&offset={}",
            urlencode(&page.next_page_token)
        );
        if !user.is_empty() {
            next.push_str(&format!("&user={}", urlencode(&user)));
        }
        next
    };
    Ok(if json {
        axum::Json(ReceiptImagesPage {
            items: items
                .into_iter()
                .map(|(id, uri)| ReceiptImageItem {
                    id,
                    uri,
                    duplicates: None,
                })
                .collect(),
            next_page: next,
        })
        .into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/xml")],
            xml::receipt_images(&items, &next),
        )
            .into_response()
    })
}

/// A new receipt image from the body: raw bytes with their `Content-Type`, or
/// `multipart/form-data` with the file in field `image`.
#[utoipa::path(post, path = "/api/v3.0/expense/receiptimages", tag = TAG,
    params(UserQuery),
    request_body(description = "The file's bytes with their type in `Content-Type`, or a form with field `image`.",
        content(("application/pdf"), ("image/jpeg"), ("image/png"), ("image/heic"), ("image/heif"),
            ("image/tiff"), ("image/gif"), ("multipart/form-data"))),
    responses((status = 201, description = "Created; `Location` is its `URI`.",
        content_type = "application/xml", body = ReceiptImageItem), Errors))]
pub async fn create(
    State(state): State<AppState>,
    query: Result<Query<UserQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, Failure> {
    let json = wants_json(request.headers());
    let Query(query) = query.map_err(bad_query)?;
    let owner = user_of(query.user.as_ref())?;
    if super::resumable::requested(request.headers()) {
        let answer = super::resumable::Answer::ReceiptV3 {
            created: true,
            json,
        };
        return super::resumable::create(&state, request, receipt(""), owner, answer).await;
    }
    let stored = store(&state, receipt(""), owner, request).await?;
    Ok(item_response(
        StatusCode::CREATED,
        &stored.image_id,
        json,
        &stored.duplicates,
    ))
}

/// The receipt image with an expiring URL: the v1 `<Image>` document (`Id`, `Url`).
#[utoipa::path(get, path = "/api/v3.0/expense/receiptimages/{id}", tag = TAG,
    params(("id" = String, Path, description = "Image ID"), UserQuery),
    responses((status = 200, description = "`<Image>` with `Id` and an expiring `Url`.",
        content_type = "application/xml", body = ImageDocument), Errors))]
pub async fn read(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<UserQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let json = wants_json(&headers);
    let id = checked_id(path)?;
    let Query(query) = query.map_err(bad_query)?;
    // With `user`, the service checks the caller may act for them and the image is theirs.
    let user = user_of(query.user.as_ref())?;
    let info = state
        .ingest
        .get_image(headers::bearer_token(&headers), receipt(&id), &user)
        .await?;
    Ok(if json {
        axum::Json(ImageDocument {
            id: id.clone(),
            url: info.url,
        })
        .into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/xml")],
            xml::image(&id, &info.url),
        )
            .into_response()
    })
}

/// Appends the body to the receipt image: it becomes one consolidated PDF (a JPEG or PNG
/// receipt its first page, the new pages after it); the quota is charged the growth.
#[utoipa::path(put, path = "/api/v3.0/expense/receiptimages/{id}", tag = TAG,
    params(("id" = String, Path, description = "Image ID"), UserQuery),
    request_body(description = "The file's bytes with their type in `Content-Type`, or a form with field `image`.",
        content(("application/pdf"), ("image/jpeg"), ("image/png"), ("image/heic"), ("image/heif"),
            ("image/tiff"), ("image/gif"), ("multipart/form-data"))),
    responses((status = 200, description = "Appended.",
        content_type = "application/xml", body = ReceiptImageItem), Errors))]
pub async fn append(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<UserQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, Failure> {
    let json = wants_json(request.headers());
    let id = checked_id(path)?;
    let Query(query) = query.map_err(bad_query)?;
    let user = user_of(query.user.as_ref())?;
    if super::resumable::requested(request.headers()) {
        let answer = super::resumable::Answer::ReceiptV3 {
            created: false,
            json,
        };
        return super::resumable::create(&state, request, receipt(&id), user, answer).await;
    }
    // The service checks the caller may append to it (and, with `user`, that it is theirs).
    let stored = store(&state, receipt(&id), user, request).await?;
    Ok(item_response(StatusCode::OK, &id, json, &stored.duplicates))
}

/// Deletes the receipt image and releases its bytes.
#[utoipa::path(delete, path = "/api/v3.0/expense/receiptimages/{id}", tag = TAG,
    params(("id" = String, Path, description = "Image ID"), UserQuery),
    responses((status = 204, description = "Deleted."), Errors))]
pub async fn remove(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<UserQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let id = checked_id(path)?;
    let Query(query) = query.map_err(bad_query)?;
    let user = user_of(query.user.as_ref())?;
    // The service checks the caller may delete it (and, with `user`, that it is theirs).
    state
        .ingest
        .delete_image(headers::bearer_token(&headers), receipt(&id), &user)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn checked_id(path: Result<Path<String>, PathRejection>) -> Result<String, Failure> {
    let Path(id) = path.map_err(bad_path)?;
    Ok(ids::check(&id, "image ID")?.to_owned())
}

/// Streams the request's file (raw body, or the form's `image` field) to `target`; returns the
/// image ID.
async fn store(
    state: &AppState,
    target: Target,
    owner: String,
    request: Request,
) -> Result<imaging_proto::v1::UploadImageResponse, Failure> {
    let body = UploadBody::read(request, Accepts::RawOrForm("image"), state.limits).await?;
    body.forward(&state.ingest, target, owner).await
}

/// A list's `limit`: 1 to 100, 25 if not given (v3 and v4 alike).
pub(crate) fn page_limit(limit: Option<&str>) -> Result<u32, Failure> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) => limit
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| Failure::invalid_request("limit must be 1 to 100.")),
    }
}

/// Percent-encodes a path or query value (everything but unreserved characters).
pub(crate) fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
