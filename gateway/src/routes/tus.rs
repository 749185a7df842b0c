//! tus 1.0 resumable uploads at `/api/uploads/`: core, creation, creation-with-upload,
//! termination, checksum (`sha1`, `sha256`) and expiration. Each call maps onto the ingest
//! service's upload sessions: POST is `StartUpload` (and a first write), HEAD `QueryUpload`,
//! PATCH a write at `Upload-Offset` (the offset must be the committed size), DELETE
//! `CancelUpload`. `Upload-Metadata` names the target (`kind`, `id`, `workspace`, `filename`,
//! `filetype`, and `owner` for an admin uploading a receipt for a user). The PATCH that
//! completes the upload answers `204` with `Image-Id` and `Content-Location` (the image on this
//! gateway), and so does a HEAD after it. Every answer carries CORS headers for browser clients.

use crate::error::{Dialect, Failure, in_dialect};
use crate::headers;
use crate::state::AppState;
use crate::upload::body::part_type;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use imaging_proto::v1::{ErrorReason, Target, TargetKind, UploadHeader, UploadStatus};

/// The protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
/// The extensions implemented.
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,checksum,expiration";
/// Checksum algorithms of the checksum extension.
pub const TUS_CHECKSUMS: &str = "sha1,sha256";
/// Where uploads are created; an upload's URL is this plus its ID.
pub const BASE: &str = "/api/uploads/";
/// The body type of PATCH (and of a POST with data).
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// The most `Upload-Metadata` kept (the service keeps at most this much text).
const MAX_METADATA: usize = 4096;

/// Request headers a browser may send (the CORS preflight's answer).
pub const CORS_ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key, \
    Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, \
    Upload-Defer-Length, Upload-Concat, X-Requested-With, X-HTTP-Method-Override, \
    Upload-Complete, Upload-Draft-Interop-Version, Content-Disposition";
/// Response headers a browser may read.
pub const CORS_EXPOSE_HEADERS: &str = "Location, Tus-Resumable, Tus-Version, Tus-Extension, \
    Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Metadata, \
    Upload-Expires, Image-Id, Content-Location, Upload-Complete, Upload-Limit, \
    Upload-Draft-Interop-Version, Retry-After, X-Error-Id";
/// Methods of the upload routes.
pub const CORS_ALLOW_METHODS: &str = "GET, POST, HEAD, PATCH, DELETE, OPTIONS";

/// The tus routes.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/api/uploads", post(create).options(options))
        .route(BASE, post(create).options(options))
        .route(
            "/api/uploads/{id}",
            axum::routing::head(status)
                .patch(append)
                .delete(cancel)
                .options(options),
        )
        .layer(DefaultBodyLimit::disable());
    in_dialect(routes, |_| Dialect::Tus)
        .layer(axum::middleware::from_fn(tus_headers))
        .layer(axum::middleware::from_fn(cors))
}

/// Every tus answer says the version; a request in another version (or none, but OPTIONS) is
/// refused with 412 and the versions spoken.
async fn tus_headers(request: Request, next: axum::middleware::Next) -> Response {
    let version = request
        .headers()
        .get("tus-resumable")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut response =
        if request.method() != Method::OPTIONS && version.as_deref() != Some(TUS_VERSION) {
            let mut response = (
                StatusCode::PRECONDITION_FAILED,
                axum::Json(serde_json::json!({
                    "code": "INVALID_REQUEST",
                    "message": format!("Tus-Resumable must be {TUS_VERSION}."),
                })),
            )
                .into_response();
            set(&mut response, "tus-version", TUS_VERSION);
            response
        } else {
            next.run(request).await
        };
    set(&mut response, "tus-resumable", TUS_VERSION);
    response
}

/// CORS for browser clients: any origin may call (credentials are bearer tokens, never
/// cookies), and may read the tus headers.
pub async fn cors(request: Request, next: axum::middleware::Next) -> Response {
    let origin = request.headers().contains_key(header::ORIGIN);
    let mut response = next.run(request).await;
    if origin {
        set(&mut response, "access-control-allow-origin", "*");
        set(
            &mut response,
            "access-control-expose-headers",
            CORS_EXPOSE_HEADERS,
        );
    }
    response
}

/// Sets a response header (a value that is not a valid header value is left out).
pub(crate) fn set(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}

/// OpenAPI tag of these routes.
const TAG: &str = "Resumable uploads (tus 1.0)";

/// What the server speaks: `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`,
/// `Tus-Checksum-Algorithm` (and a CORS preflight's answer).
#[utoipa::path(options, path = "/api/uploads/", tag = TAG,
    responses((status = 204, description = "The protocol's capabilities in headers.")))]
pub async fn options(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    set(&mut response, "tus-version", TUS_VERSION);
    set(&mut response, "tus-extension", TUS_EXTENSIONS);
    set(&mut response, "tus-checksum-algorithm", TUS_CHECKSUMS);
    set(
        &mut response,
        "tus-max-size",
        &state.limits.max_upload_bytes.to_string(),
    );
    set(
        &mut response,
        "access-control-allow-methods",
        CORS_ALLOW_METHODS,
    );
    set(
        &mut response,
        "access-control-allow-headers",
        CORS_ALLOW_HEADERS,
    );
    set(&mut response, "access-control-max-age", "86400");
    response
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
pub fn parse_metadata(text: &str) -> Result<Vec<(String, String)>, Failure> {
    let bad = |why: &str| Failure::invalid_request(format!("Upload-Metadata: {why}."));
    if text.len() > MAX_METADATA {
        return Err(bad("too long"));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = match pair.split_once(' ') {
            Some((key, value)) => (key, value.trim()),
            None => (pair, ""),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("a key is not visible ASCII"));
        }
        if pairs.iter().any(|(seen, _)| seen == key) {
            return Err(bad("a key appears twice"));
        }
        let value = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| bad("a value is not Base64 of UTF-8 text"))?;
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

/// The target kind a metadata `kind` names.
fn kind(name: &str) -> Result<TargetKind, Failure> {
    match name.to_ascii_lowercase().replace('-', "_").as_str() {
        "" | "receipt" => Ok(TargetKind::Receipt),
        "expense_entry" | "expenseentry" | "entry" => Ok(TargetKind::ExpenseEntry),
        "invoice" => Ok(TargetKind::Invoice),
        "report" => Ok(TargetKind::Report),
        "workspace_expense" | "expense" => Ok(TargetKind::WorkspaceExpense),
        _ => Err(Failure::invalid_request(
            "Upload-Metadata: kind must be receipt, expense_entry, invoice, report or \
             workspace_expense.",
        )),
    }
}

/// An integer header (`Upload-Length`, `Upload-Offset`): digits only.
fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Failure> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse().ok())
            .map(Some)
            .ok_or_else(|| Failure::invalid_request(format!("{name} must be a whole number."))),
    }
}

/// `Upload-Checksum: <algorithm> <base64>`: the SHA-1 or SHA-256 of the request body.
fn checksum(headers: &HeaderMap, header: &mut UploadHeader) -> Result<(), Failure> {
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(());
    };
    let bad = || {
        Failure::invalid_request("Upload-Checksum must be `sha1 <base64>` or `sha256 <base64>`.")
    };
    let text = value.to_str().map_err(|_| bad())?;
    let (algorithm, digest) = text.trim().split_once(' ').ok_or_else(bad)?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| bad())?;
    match (algorithm.to_ascii_lowercase().as_str(), digest.len()) {
        ("sha1", 20) => header.write_sha1 = digest,
        ("sha256", 32) => header.write_sha256 = digest,
        _ => return Err(bad()),
    }
    Ok(())
}

/// The image's URI on this gateway.
pub fn image_location(target: &Target, image_id: &str) -> String {
    match TargetKind::try_from(target.kind) {
        Ok(TargetKind::ExpenseEntry) => format!("/api/image/v1.0/expenseentry/{image_id}"),
        Ok(TargetKind::Invoice) => format!("/api/image/v1.0/invoice/{image_id}"),
        Ok(TargetKind::Report) => format!("/api/image/v1.0/report/{image_id}"),
        Ok(TargetKind::WorkspaceExpense) => format!(
            "/api/v1/client/workspace/{}/expenses/{image_id}/receipt",
            target.workspace_id
        ),
        _ => format!("/api/v3.0/expense/receiptimages/{image_id}"),
    }
}

/// An HTTP date (`Upload-Expires`), from Unix seconds.
pub fn http_date(unix_seconds: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_default()
}

/// The headers every state answer carries: the offset, and once complete, the image.
fn describe(response: &mut Response, status: &UploadStatus, offset: u64) {
    set(response, "upload-offset", &offset.to_string());
    set(response, "cache-control", "no-store");
    if status.expires_at > 0 {
        set(response, "upload-expires", &http_date(status.expires_at));
    }
    if let Some(result) = &status.result {
        set(response, "image-id", &result.image_id);
        if let Some(target) = &status.target {
            set(
                response,
                "content-location",
                &image_location(target, &result.image_id),
            );
        }
    }
}

/// Creates an upload (`Upload-Length` required; `Upload-Metadata` names the target: `kind`,
/// `id`, `workspace`, `filename`, `filetype`, `owner`); an `application/offset+octet-stream`
/// body is its first write.
#[utoipa::path(post, path = "/api/uploads/", tag = TAG,
    responses((status = 201, description = "Created: `Location`, `Upload-Offset`, `Upload-Expires`; with `Image-Id` and `Content-Location` if the body completed it."),
        (status = 400, description = "Missing or malformed tus headers", body = crate::error::ErrorBody),
        (status = 412, description = "Another `Tus-Resumable` version"),
        (status = 413, description = "`Upload-Length` over the limit", body = crate::error::ErrorBody),
        (status = 429, description = "Too many open uploads", body = crate::error::ErrorBody)))]
pub async fn create(State(state): State<AppState>, request: Request) -> Result<Response, Failure> {
    let headers = request.headers().clone();
    let token = headers::required_token(&headers)?.to_owned();
    if headers.contains_key("upload-defer-length") {
        return Err(Failure::invalid_request(
            "Upload-Defer-Length is not supported: send Upload-Length.",
        ));
    }
    if headers.contains_key("upload-concat") {
        return Err(Failure::invalid_request("Upload-Concat is not supported."));
    }
    let length = number(&headers, "upload-length")?
        .ok_or_else(|| Failure::invalid_request("Upload-Length is required."))?;
    if length > state.limits.max_upload_bytes {
        return Err(Failure::too_large(state.limits.max_upload_bytes));
    }
    if length == 0 {
        return Err(Failure::local(
            ErrorReason::MissingFile,
            "The upload is empty.",
        ));
    }
    let raw_metadata = headers
        .get("upload-metadata")
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| Failure::invalid_request("Upload-Metadata must be ASCII."))
        })
        .transpose()?
        .unwrap_or_default();
    let metadata = parse_metadata(&raw_metadata)?;
    let field = |name: &str| {
        metadata
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let file_name = field("filename");
    let filetype = field("filetype");
    let header = UploadHeader {
        target: Some(Target {
            kind: kind(&field("kind"))?.into(),
            id: field("id"),
            workspace_id: field("workspace"),
        }),
        content_type: part_type(
            (!filetype.is_empty()).then_some(filetype.as_str()),
            &file_name,
        ),
        file_name,
        declared_size: length,
        idempotency_key: headers::idempotency_key(&headers)?,
        owner: field("owner"),
        ..UploadHeader::default()
    };
    let created = state
        .ingest
        .start_upload(Some(&token), header, raw_metadata)
        .await?;
    let location = format!("{BASE}{}", created.upload_id);
    let with_data = headers::content_type(&headers) == OFFSET_OCTET_STREAM
        && headers::content_length(&headers)? != Some(0);
    let (status, offset) = if with_data {
        let written = write(&state, &token, &created.upload_id, 0, request).await;
        // The upload exists whatever became of its data: the client learns where it is, and
        // resumes from its offset.
        match written {
            Ok(status) => {
                let offset = status.committed_size;
                (status, offset)
            }
            Err(failure) if failure.reason().is_some_and(is_refusal) => return Err(failure),
            Err(_) => {
                let status = state
                    .ingest
                    .query_upload(Some(&token), &created.upload_id)
                    .await?;
                let offset = status.committed_size;
                (status, offset)
            }
        }
    } else {
        (created, 0)
    };
    let mut response = StatusCode::CREATED.into_response();
    set(&mut response, "location", &location);
    describe(&mut response, &status, offset);
    Ok(response)
}

/// A refusal of the upload itself (its bytes, its type, its size), which resuming cannot mend.
fn is_refusal(reason: ErrorReason) -> bool {
    matches!(
        reason,
        ErrorReason::ContentTypeMismatch
            | ErrorReason::CorruptImage
            | ErrorReason::EncryptedPdf
            | ErrorReason::SizeMismatch
            | ErrorReason::ChecksumMismatch
            | ErrorReason::FileTooLarge
            | ErrorReason::UnsupportedMediaType
            | ErrorReason::QuotaExceeded
            | ErrorReason::AlreadyAttached
            | ErrorReason::ReportTooLarge
            | ErrorReason::IdempotencyKeyReused
    )
}

/// Writes the request body to the session at `offset`; the session after it.
async fn write(
    state: &AppState,
    token: &str,
    id: &str,
    offset: u64,
    request: Request,
) -> Result<UploadStatus, Failure> {
    let mut header = UploadHeader {
        upload_id: id.to_owned(),
        write_offset: offset,
        exact_offset: true,
        ..UploadHeader::default()
    };
    checksum(request.headers(), &mut header)?;
    let body = request.into_body().into_data_stream();
    let written = crate::upload::forward_write(
        &state.ingest,
        Some(token),
        header,
        body,
        state.limits,
        |error| Failure::invalid_request("The request body could not be read.").with_detail(error),
    )
    .await?;
    let complete = written.complete;
    Ok(UploadStatus {
        upload_id: id.to_owned(),
        committed_size: written.committed_size,
        expires_at: written.expires_at,
        complete,
        target: written.target.clone(),
        result: complete.then_some(written),
        ..UploadStatus::default()
    })
}

/// The offset, the length and the metadata; once complete, `Image-Id` and `Content-Location`.
#[utoipa::path(head, path = "/api/uploads/{id}", tag = TAG,
    params(("id" = String, Path, description = "Upload ID")),
    responses((status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Metadata`, `Upload-Expires`."),
        (status = 404, description = "No such upload (or expired)")))]
pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let token = headers::required_token(&headers)?;
    let status = state.ingest.query_upload(Some(token), &id).await?;
    let mut response = StatusCode::OK.into_response();
    describe(&mut response, &status, status.committed_size);
    if status.length > 0 {
        set(&mut response, "upload-length", &status.length.to_string());
    }
    if !status.client_metadata.is_empty() {
        set(&mut response, "upload-metadata", &status.client_metadata);
    }
    Ok(response)
}

/// Appends the body at `Upload-Offset` (checked against `Upload-Checksum` if given).
#[utoipa::path(patch, path = "/api/uploads/{id}", tag = TAG,
    params(("id" = String, Path, description = "Upload ID")),
    request_body(content_type = "application/offset+octet-stream", description = "The bytes from `Upload-Offset` on"),
    responses((status = 204, description = "Appended: `Upload-Offset`; the completing PATCH adds `Image-Id` and `Content-Location`."),
        (status = 409, description = "`Upload-Offset` is not the upload's offset", body = crate::error::ErrorBody),
        (status = 415, description = "Not `application/offset+octet-stream`"),
        (status = 460, description = "`Upload-Checksum` does not match the body", body = crate::error::ErrorBody)))]
pub async fn append(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Failure> {
    let headers = request.headers().clone();
    let token = headers::required_token(&headers)?.to_owned();
    if headers::content_type(&headers) != OFFSET_OCTET_STREAM {
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(serde_json::json!({
                "code": "INVALID_REQUEST",
                "message": format!("A PATCH body is {OFFSET_OCTET_STREAM}."),
            })),
        )
            .into_response());
    }
    let offset = number(&headers, "upload-offset")?
        .ok_or_else(|| Failure::invalid_request("Upload-Offset is required."))?;
    let status = write(&state, &token, &id, offset, request).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    describe(&mut response, &status, status.committed_size);
    Ok(response)
}

/// Ends the upload and frees its bytes and quota.
#[utoipa::path(delete, path = "/api/uploads/{id}", tag = TAG,
    params(("id" = String, Path, description = "Upload ID")),
    responses((status = 204, description = "Terminated"), (status = 404, description = "No such upload")))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let token = headers::required_token(&headers)?;
    state.ingest.cancel_upload(Some(token), &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_are_read_as_the_protocol_writes_them() {
        let pairs = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(
            pairs,
            vec![
                (
                    "filename".to_owned(),
                    "world_domination_plan.pdf".to_owned()
                ),
                ("is_confidential".to_owned(), String::new()),
            ]
        );
        assert!(parse_metadata("a YQ==,a Yg==").is_err(), "a key twice");
        assert!(parse_metadata("a !!!").is_err(), "not Base64");
        assert!(parse_metadata(&"a YQ==,".repeat(1000)).is_err(), "too long");
    }

    #[test]
    fn upload_expires_is_an_http_date() {
        assert_eq!(http_date(1_750_867_200), "Wed, 25 Jun 2025 16:00:00 GMT");
    }

    #[test]
    fn the_image_location_is_the_route_that_reads_it() {
        let target = |kind: TargetKind| Target {
            kind: kind.into(),
            id: "x".into(),
            workspace_id: "w1".into(),
        };
        assert_eq!(
            image_location(&target(TargetKind::Receipt), "abc"),
            "/api/v3.0/expense/receiptimages/abc"
        );
        assert_eq!(
            image_location(&target(TargetKind::WorkspaceExpense), "e1"),
            "/api/v1/client/workspace/w1/expenses/e1/receipt"
        );
    }
}
