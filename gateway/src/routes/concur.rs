//! Concur Image v1 (XML): raw-bytes uploads to loose receipts, expense entries, invoices and
//! reports, and expiring image URLs. Both `v1.0` and `v1.1` prefixes are served; any other
//! version is 404.

use crate::error::{Dialect, Failure, in_dialect};
use crate::state::AppState;
use crate::upload::{Accepts, UploadBody};
use crate::{headers, ids, xml};
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use imaging_proto::v1::{ErrorReason, Target, TargetKind};

/// The API versions served.
pub const VERSIONS: [&str; 2] = ["v1.0", "v1.1"];

/// OpenAPI tag of these routes.
const TAG: &str = "Concur Image v1";

/// The Concur routes. Bodies are streamed, so axum's body limit is off; [`UploadBody`]
/// enforces the byte limit itself.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/api/image/{version}/receipt", post(post_receipt))
        .route("/api/image/{version}/receipt/{imageId}", get(get_receipt))
        .route(
            "/api/image/{version}/expenseentry/{entryId}",
            post(post_expense_entry).get(get_expense_entry),
        )
        .route(
            "/api/image/{version}/invoice/{requestId}",
            post(post_invoice).get(get_invoice),
        )
        .route(
            "/api/image/{version}/report/{reportId}",
            post(post_report).get(get_report),
        )
        .layer(DefaultBodyLimit::disable());
    in_dialect(routes, |_| Dialect::Concur)
}

/// Error responses of the upload routes (all `application/xml` `<Error>` documents).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum UploadErrors {
    /// Bad ID format or malformed digest header.
    #[response(status = 400, content_type = "application/xml")]
    BadRequest(String),
    /// No or invalid token.
    #[response(status = 401, content_type = "application/xml")]
    Unauthorized(String),
    /// Not permitted on this target.
    #[response(status = 403, content_type = "application/xml")]
    Forbidden(String),
    /// Unknown version or target.
    #[response(status = 404, content_type = "application/xml")]
    NotFound(String),
    /// The entry or invoice already has its image.
    #[response(status = 409, content_type = "application/xml")]
    Conflict(String),
    /// Over 10 MB, or (reports) an append that would take the report past its size or page
    /// bound (200 MB, 2,000 pages by default).
    #[response(status = 413, content_type = "application/xml")]
    TooLarge(String),
    /// Declared type not accepted.
    #[response(status = 415, content_type = "application/xml")]
    UnsupportedType(String),
    /// Corrupt, mismatched or encrypted file, or checksum/size mismatch.
    #[response(status = 422, content_type = "application/xml")]
    Unprocessable(String),
    /// Storage or quota store unavailable; retry (`Retry-After`).
    #[response(status = 503, content_type = "application/xml")]
    Unavailable(String),
    /// The workspace quota is full.
    #[response(status = 507, content_type = "application/xml")]
    QuotaExceeded(String),
}

/// Error responses of the URL routes.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum UrlErrors {
    /// Bad ID format.
    #[response(status = 400, content_type = "application/xml")]
    BadRequest(String),
    /// No or invalid token.
    #[response(status = 401, content_type = "application/xml")]
    Unauthorized(String),
    /// Not permitted on this target.
    #[response(status = 403, content_type = "application/xml")]
    Forbidden(String),
    /// Unknown version, target, or no image yet.
    #[response(status = 404, content_type = "application/xml")]
    NotFound(String),
    /// Storage unavailable; retry (`Retry-After`).
    #[response(status = 503, content_type = "application/xml")]
    Unavailable(String),
}

/// Uploads a loose receipt owned by the caller.
#[utoipa::path(post, path = "/api/image/{version}/receipt", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`")),
    request_body(description = "The file's bytes; its type in `Content-Type`: PDF, JPEG or PNG (any other type 415).",
        content(("application/pdf"), ("image/jpeg"), ("image/jpg"), ("image/png"))),
    responses((status = 201, description = "Stored; `Id` is the new image ID.",
        content_type = "application/xml", body = String), UploadErrors))]
pub async fn post_receipt(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Failure> {
    let Path(version) = path.map_err(bad_path)?;
    store(&state, &version, TargetKind::Receipt, None, request).await
}

/// Attaches the image of an expense entry (one per entry: 409 if it has one).
#[utoipa::path(post, path = "/api/image/{version}/expenseentry/{entryId}", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`"),
        ("entryId" = String, Path, description = "Expense entry ID")),
    request_body(description = "The file's bytes; its type in `Content-Type`: PDF, JPEG or PNG (any other type 415).",
        content(("application/pdf"), ("image/jpeg"), ("image/jpg"), ("image/png"))),
    responses((status = 201, description = "Stored; `Id` is the entry ID.",
        content_type = "application/xml", body = String), UploadErrors))]
pub async fn post_expense_entry(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, Failure> {
    store_on(state, path, TargetKind::ExpenseEntry, request).await
}

/// Attaches the image of an invoice (payment request; 409 if it has one).
#[utoipa::path(post, path = "/api/image/{version}/invoice/{requestId}", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`"),
        ("requestId" = String, Path, description = "Payment request ID")),
    request_body(description = "The file's bytes; its type in `Content-Type`: PDF, JPEG or PNG (any other type 415).",
        content(("application/pdf"), ("image/jpeg"), ("image/jpg"), ("image/png"))),
    responses((status = 201, description = "Stored; `Id` is the request ID.",
        content_type = "application/xml", body = String), UploadErrors))]
pub async fn post_invoice(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, Failure> {
    store_on(state, path, TargetKind::Invoice, request).await
}

/// Appends the file's pages to the report's PDF.
#[utoipa::path(post, path = "/api/image/{version}/report/{reportId}", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`"),
        ("reportId" = String, Path, description = "Report ID")),
    request_body(description = "The file's bytes; its type in `Content-Type`: PDF, JPEG or PNG (any other type 415).",
        content(("application/pdf"), ("image/jpeg"), ("image/jpg"), ("image/png"))),
    responses((status = 201, description = "Appended; `Id` is the report ID.",
        content_type = "application/xml", body = String), UploadErrors))]
pub async fn post_report(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, Failure> {
    store_on(state, path, TargetKind::Report, request).await
}

/// An expiring URL of a loose receipt's image.
#[utoipa::path(get, path = "/api/image/{version}/receipt/{imageId}", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`"),
        ("imageId" = String, Path, description = "Image ID")),
    responses((status = 200, description = "`<Image>` with an expiring `Url`.",
        content_type = "application/xml", body = String), UrlErrors))]
pub async fn get_receipt(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    url_of(state, path, TargetKind::Receipt, headers).await
}

/// An expiring URL of an expense entry's image.
#[utoipa::path(get, path = "/api/image/{version}/expenseentry/{entryId}", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`"),
        ("entryId" = String, Path, description = "Expense entry ID")),
    responses((status = 200, description = "`<Image>` with an expiring `Url`.",
        content_type = "application/xml", body = String), UrlErrors))]
pub async fn get_expense_entry(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    url_of(state, path, TargetKind::ExpenseEntry, headers).await
}

/// An expiring URL of an invoice's image.
#[utoipa::path(get, path = "/api/image/{version}/invoice/{requestId}", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`"),
        ("requestId" = String, Path, description = "Payment request ID")),
    responses((status = 200, description = "`<Image>` with an expiring `Url`.",
        content_type = "application/xml", body = String), UrlErrors))]
pub async fn get_invoice(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    url_of(state, path, TargetKind::Invoice, headers).await
}

/// An expiring URL of a report's consolidated PDF.
#[utoipa::path(get, path = "/api/image/{version}/report/{reportId}", tag = TAG,
    params(("version" = String, Path, description = "`v1.0` or `v1.1`"),
        ("reportId" = String, Path, description = "Report ID")),
    responses((status = 200, description = "`<Image>` with an expiring `Url`.",
        content_type = "application/xml", body = String), UrlErrors))]
pub async fn get_report(
    state: State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    url_of(state, path, TargetKind::Report, headers).await
}

/// POST to a target named in the path.
async fn store_on(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    kind: TargetKind,
    request: Request,
) -> Result<Response, Failure> {
    let Path((version, id)) = path.map_err(bad_path)?;
    store(&state, &version, kind, Some(&id), request).await
}

/// GET of a target named in the path.
async fn url_of(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    kind: TargetKind,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let Path((version, id)) = path.map_err(bad_path)?;
    check_version(&version)?;
    let id = ids::check(&id, id_name(kind))?;
    let info = state
        .ingest
        .get_image(headers::bearer_token(&headers), target(kind, id), "")
        .await?;
    Ok(xml_response(StatusCode::OK, xml::image(id, &info.url)))
}

/// Streams the body to the target; `id` is `None` for loose receipts.
/// The types Concur Image v1 documents (and the JPEG aliases the service takes).
const V1_TYPES: [&str; 5] = [
    "application/pdf",
    "image/jpeg",
    "image/jpg",
    "image/pjpeg",
    "image/png",
];

async fn store(
    state: &AppState,
    version: &str,
    kind: TargetKind,
    id: Option<&str>,
    request: Request,
) -> Result<Response, Failure> {
    check_version(version)?;
    let id = id.map(|id| ids::check(id, id_name(kind))).transpose()?;
    if super::resumable::requested(request.headers()) {
        let content_type = headers::content_type(request.headers());
        if headers::bearer_token(request.headers()).is_some()
            && !V1_TYPES.contains(&content_type.as_str())
        {
            return Err(Failure::local(
                ErrorReason::UnsupportedMediaType,
                "Image v1 takes PDF, JPEG and PNG files; use Receipt Image v3 for HEIC, TIFF and GIF.",
            ));
        }
        let target = target(kind, id.unwrap_or_default());
        let answer = super::resumable::Answer::ConcurV1;
        return super::resumable::create(state, request, target, String::new(), answer).await;
    }
    let body = UploadBody::read(request, Accepts::Raw, state.limits).await?;
    // Image v1 keeps the three types its documentation lists; an unauthenticated caller is
    // told so by the service (401) first.
    if body.token().is_some() && !V1_TYPES.contains(&body.content_type().as_str()) {
        return Err(Failure::local(
            ErrorReason::UnsupportedMediaType,
            "Image v1 takes PDF, JPEG and PNG files; use Receipt Image v3 for HEIC, TIFF and GIF.",
        ));
    }
    let stored = body
        .forward(
            &state.ingest,
            target(kind, id.unwrap_or_default()),
            String::new(),
        )
        .await?;
    Ok(created(id.unwrap_or(&stored.image_id)))
}

/// The answer to a stored upload: `201` and the `<Image>` document.
pub(crate) fn created(image_id: &str) -> Response {
    xml_response(StatusCode::CREATED, xml::image(image_id, ""))
}

fn check_version(version: &str) -> Result<(), Failure> {
    if VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(Failure::route_not_found())
    }
}

fn target(kind: TargetKind, id: &str) -> Target {
    Target {
        kind: kind.into(),
        id: id.to_owned(),
        workspace_id: String::new(),
    }
}

fn id_name(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::ExpenseEntry => "entry ID",
        TargetKind::Invoice => "request ID",
        TargetKind::Report => "report ID",
        _ => "image ID",
    }
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn bad_path(rejection: PathRejection) -> Failure {
    Failure::invalid_id("path").with_detail(rejection)
}
