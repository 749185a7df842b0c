//! HTTP resumable uploads (draft-ietf-httpbis-resumable-upload, interop version 8) on the
//! upload routes: Concur Image v1's POSTs, Receipt Image v3's POST and PUT, and the workspace
//! POST. A request to one of them with `Upload-Complete: ?0` and `Upload-Draft-Interop-Version:
//! 8` creates an upload resource at `/api/resumable/{id}` (a session of the ingest service, with
//! the route's target, type and owner) and appends its body; the answer is `201` with its
//! `Location` and `Upload-Limit`. `HEAD` on the resource gives `Upload-Offset`,
//! `Upload-Complete`, `Upload-Length` and `Upload-Limit`; `PATCH` with
//! `application/partial-upload` appends at `Upload-Offset` (`409` and the mismatching-offset
//! problem if it is not the resource's offset); `DELETE` cancels. The request that completes the
//! upload gets the route's own answer (`201` and the `<Image>` document, the v3 item, the
//! workspace JSON) or its error, with `Upload-Complete: ?1`.
//!
//! A `104 (Upload Resumption Supported)` interim response is never sent (the HTTP server does
//! not send informational responses), so a request with `Upload-Complete: ?1` is taken as an
//! ordinary one-shot upload, which the draft allows: clients resume with the careful creation
//! (`?0`) instead.

use super::tus::set;
use crate::error::{AppError, Dialect, Failure};
use crate::headers;
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imaging_proto::v1::{ErrorReason, Target, UploadHeader, UploadImageResponse, UploadStatus};

/// The draft's interop version implemented.
pub const INTEROP_VERSION: &str = "8";
/// Where upload resources are.
pub const BASE: &str = "/api/resumable/";
/// The media type of an append.
const PARTIAL_UPLOAD: &str = "application/partial-upload";
/// Problem types of the draft.
const MISMATCHING_OFFSET: &str =
    "https://iana.org/assignments/http-problem-types#mismatching-upload-offset";
const COMPLETED_UPLOAD: &str = "https://iana.org/assignments/http-problem-types#completed-upload";
const INCONSISTENT_LENGTH: &str =
    "https://iana.org/assignments/http-problem-types#inconsistent-upload-length";

/// What the upload's route answers once it is complete (kept with the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Concur Image v1: `201` and the `<Image>` document; `id` is the target's (none for a
    /// loose receipt, whose ID is the new image's).
    ConcurV1,
    /// Receipt Image v3 POST (`201`) or PUT (`200`): the item, in JSON or XML.
    ReceiptV3 { created: bool, json: bool },
    /// The workspace POST: `201` and the image's JSON.
    Workspace,
    /// Concur Receipts v4 POST: `202` once the file is stored and queued, with `Location` and
    /// the processing-status `Link`.
    ReceiptsV4,
}

impl Answer {
    /// The session's text: which route it came from.
    fn tag(&self) -> String {
        match self {
            Answer::ConcurV1 => "draft route=concur-v1".to_owned(),
            Answer::ReceiptV3 { created, json } => {
                format!("draft route=receipt-v3 created={created} json={json}")
            }
            Answer::Workspace => "draft route=workspace".to_owned(),
            Answer::ReceiptsV4 => "draft route=receipts-v4".to_owned(),
        }
    }

    /// The route's upload limits.
    fn limits(&self, state: &AppState) -> crate::upload::Limits {
        match self {
            Answer::ReceiptsV4 => state.v4_limits,
            _ => state.limits,
        }
    }

    fn parse(text: &str) -> Option<Answer> {
        let mut words = text.split(' ');
        if words.next() != Some("draft") {
            return None;
        }
        let fields: Vec<(&str, &str)> = words.filter_map(|word| word.split_once('=')).collect();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| *value)
        };
        match field("route")? {
            "concur-v1" => Some(Answer::ConcurV1),
            "receipt-v3" => Some(Answer::ReceiptV3 {
                created: field("created") == Some("true"),
                json: field("json") == Some("true"),
            }),
            "workspace" => Some(Answer::Workspace),
            "receipts-v4" => Some(Answer::ReceiptsV4),
            _ => None,
        }
    }

    /// The dialect the route's errors are in.
    fn dialect(&self) -> Dialect {
        match self {
            Answer::ConcurV1 => Dialect::Concur,
            Answer::ReceiptV3 { json: true, .. } => Dialect::ConcurJson,
            Answer::ReceiptV3 { json: false, .. } => Dialect::Concur,
            Answer::Workspace => Dialect::Workspace,
            Answer::ReceiptsV4 => Dialect::ReceiptsV4,
        }
    }

    /// The route's answer to a stored upload.
    async fn render(
        &self,
        state: &AppState,
        token: Option<&str>,
        target: &Target,
        stored: UploadImageResponse,
    ) -> Response {
        let id = if target.id.is_empty() {
            stored.image_id.clone()
        } else {
            target.id.clone()
        };
        match self {
            Answer::ConcurV1 => super::concur::created(&id),
            Answer::ReceiptV3 { created, json } => {
                super::receipts_v3::answer(*created, &id, *json, &stored.duplicates)
            }
            Answer::Workspace => {
                super::workspace::stored_answer(state, token, target.clone(), stored)
                    .await
                    .into_response()
            }
            Answer::ReceiptsV4 => super::receipts_v4::accepted(&id),
        }
    }
}

/// True if the request asks to start a resumable upload (`Upload-Complete: ?0`, in the draft's
/// interop version); a `?1` request is an ordinary upload.
pub fn requested(headers: &HeaderMap) -> bool {
    header_text(headers, "upload-draft-interop-version") == Some(INTEROP_VERSION)
        && complete(headers) == Some(false)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
}

/// `Upload-Complete` (a structured-field Boolean).
fn complete(headers: &HeaderMap) -> Option<bool> {
    match header_text(headers, "upload-complete")? {
        "?1" => Some(true),
        "?0" => Some(false),
        _ => None,
    }
}

/// A non-negative structured-field Integer header (`Upload-Offset`, `Upload-Length`).
fn integer(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Failure> {
    match header_text(headers, name) {
        None => Ok(None),
        Some(text)
            if !text.is_empty() && text.len() <= 15 && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(text.parse().ok())
        }
        Some(_) => Err(Failure::invalid_request(format!(
            "{name} must be a non-negative integer."
        ))),
    }
}

/// `Upload-Limit`: the largest upload and, for a resource, its remaining lifetime.
fn limit(limits: crate::upload::Limits, expires_at: Option<i64>) -> String {
    let mut text = format!("max-size={}", limits.max_upload_bytes);
    if let Some(expires_at) = expires_at {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        text.push_str(&format!(", max-age={}", (expires_at - now).max(0)));
    }
    text
}

/// A problem document (RFC 9457) of the draft.
fn problem(status: StatusCode, kind: &str, title: &str, extra: serde_json::Value) -> Response {
    let mut body = serde_json::json!({ "type": kind, "title": title });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let mut response = (status, body.to_string()).into_response();
    set(&mut response, "content-type", "application/problem+json");
    response
}

/// Starts a resumable upload of the request's body to `target` (the route checked its path);
/// the route answers with what this returns.
pub async fn create(
    state: &AppState,
    request: Request,
    target: Target,
    owner: String,
    answer: Answer,
) -> Result<Response, Failure> {
    let headers = request.headers().clone();
    let token = headers::required_token(&headers)?.to_owned();
    let length = integer(&headers, "upload-length")?;
    let limits = answer.limits(state);
    if length.is_some_and(|length| length > limits.max_upload_bytes) {
        let mut response = Failure::too_large(limits.max_upload_bytes).into_response();
        set(&mut response, "upload-limit", &limit(limits, None));
        return Ok(response);
    }
    let header = UploadHeader {
        target: Some(target),
        content_type: headers::content_type(&headers),
        file_name: String::new(),
        declared_size: length.unwrap_or(0),
        idempotency_key: headers::idempotency_key(&headers)?,
        sha256: headers::client_sha256(&headers)?,
        owner,
        process_async: answer == Answer::ReceiptsV4,
        ..UploadHeader::default()
    };
    let created = state
        .ingest
        .start_upload(Some(&token), header, answer.tag())
        .await?;
    let written = write(state, limits, &token, &created.upload_id, 0, false, request).await;
    let mut response = match written {
        Ok(_) => StatusCode::CREATED.into_response(),
        // The resource exists whatever became of the body: the client resumes from its offset.
        Err(failure) if !is_refusal(&failure) => StatusCode::CREATED.into_response(),
        Err(failure) => return Err(failure),
    };
    set(
        &mut response,
        "location",
        &format!("{BASE}{}", created.upload_id),
    );
    set(
        &mut response,
        "upload-limit",
        &limit(limits, Some(created.expires_at)),
    );
    set(&mut response, "upload-complete", "?0");
    Ok(response)
}

/// A refusal of the upload itself (its bytes, type or size), which resuming cannot mend.
fn is_refusal(failure: &Failure) -> bool {
    failure.reason().is_some_and(|reason| {
        matches!(
            reason,
            ErrorReason::ContentTypeMismatch
                | ErrorReason::SizeMismatch
                | ErrorReason::FileTooLarge
                | ErrorReason::ChecksumMismatch
        )
    })
}

/// Writes the request body to the session at `offset`.
async fn write(
    state: &AppState,
    limits: crate::upload::Limits,
    token: &str,
    id: &str,
    offset: u64,
    finish: bool,
    request: Request,
) -> Result<UploadImageResponse, Failure> {
    let header = UploadHeader {
        upload_id: id.to_owned(),
        write_offset: offset,
        exact_offset: true,
        finish_write: finish,
        ..UploadHeader::default()
    };
    let body = request.into_body().into_data_stream();
    crate::upload::forward_write(&state.ingest, Some(token), header, body, limits, |error| {
        Failure::invalid_request("The request body could not be read.").with_detail(error)
    })
    .await
}

/// The upload-resource routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/resumable/{id}",
            axum::routing::head(offset)
                .patch(append)
                .delete(cancel)
                .options(options_of_resource),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(super::tus::cors))
}

/// OPTIONS on every upload route says resumable uploads can be started there, and their limit.
pub async fn options_layer(
    State(state): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != Method::OPTIONS || !is_upload_route(request.uri().path()) {
        return next.run(request).await;
    }
    let limits = if request.uri().path().starts_with("/receipts/") {
        state.v4_limits
    } else {
        state.limits
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    set(&mut response, "accept-patch", PARTIAL_UPLOAD);
    set(&mut response, "upload-limit", &limit(limits, None));
    set(&mut response, "allow", "OPTIONS, POST, PUT");
    response
}

/// The routes that take uploads (and so can start resumable ones).
fn is_upload_route(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["api", "image", _, "receipt"]
            | ["api", "image", _, "expenseentry" | "invoice" | "report", _]
            | ["api", "v3.0", "expense", "receiptimages"]
            | ["api", "v3.0", "expense", "receiptimages", _]
            | [
                "api",
                "v1",
                "client",
                "workspace",
                _,
                "expenses",
                _,
                "receipt"
            ]
            | ["receipts", "v4", "users", _, "image-only-receipts"]
    )
}

async fn options_of_resource(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    set(&mut response, "accept-patch", PARTIAL_UPLOAD);
    set(&mut response, "upload-limit", &limit(state.limits, None));
    set(&mut response, "allow", "OPTIONS, HEAD, PATCH, DELETE");
    response
}

/// The session's state.
async fn status_of(state: &AppState, token: &str, id: &str) -> Result<UploadStatus, Failure> {
    Ok(state.ingest.query_upload(Some(token), id).await?)
}

fn token_of(headers: &HeaderMap) -> Result<String, Failure> {
    headers::required_token(headers).map(str::to_owned)
}

/// A failure about the upload resource itself, as JSON `{"code", "message"}`.
fn refused(failure: Failure) -> Response {
    AppError::new(Dialect::Workspace, failure).into_response()
}

/// OpenAPI tag of these routes.
const TAG: &str = "Resumable uploads (HTTP draft, interop version 8)";

/// The offset, completeness, length and limits of an upload resource.
#[utoipa::path(head, path = "/api/resumable/{id}", tag = TAG,
    params(("id" = String, Path, description = "Upload resource ID")),
    responses((status = 204, description = "`Upload-Offset`, `Upload-Complete`, `Upload-Length`, `Upload-Limit`."),
        (status = 404, description = "No such upload")))]
pub async fn offset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = match token_of(&headers) {
        Ok(token) => token,
        Err(failure) => return refused(failure),
    };
    let status = match status_of(&state, &token, &id).await {
        Ok(status) => status,
        Err(failure) => return refused(failure),
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    set(
        &mut response,
        "upload-offset",
        &status.committed_size.to_string(),
    );
    set(
        &mut response,
        "upload-complete",
        if status.complete { "?1" } else { "?0" },
    );
    if status.length > 0 {
        set(&mut response, "upload-length", &status.length.to_string());
    }
    set(
        &mut response,
        "upload-limit",
        &limit(
            Answer::parse(&status.client_metadata).map_or(state.limits, |a| a.limits(&state)),
            Some(status.expires_at),
        ),
    );
    set(&mut response, "cache-control", "no-store");
    response
}

/// Appends at `Upload-Offset`; with `Upload-Complete: ?1` the upload completes and the answer
/// is the upload route's own.
#[utoipa::path(patch, path = "/api/resumable/{id}", tag = TAG,
    params(("id" = String, Path, description = "Upload resource ID")),
    request_body(content_type = "application/partial-upload", description = "The bytes from `Upload-Offset` on"),
    responses((status = 204, description = "Appended (`Upload-Complete: ?0`)"),
        (status = 400, description = "Inconsistent length, or the upload is complete (problem+json)"),
        (status = 409, description = "Mismatching offset (problem+json with `expected-offset`)")))]
pub async fn append(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let token = match token_of(&headers) {
        Ok(token) => token,
        Err(failure) => return refused(failure),
    };
    let refuse = refused;
    if headers::content_type(&headers) != PARTIAL_UPLOAD {
        let mut response = refuse(Failure::invalid_request(format!(
            "An append is {PARTIAL_UPLOAD}."
        )));
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return response;
    }
    let (offset, finish) = match (integer(&headers, "upload-offset"), complete(&headers)) {
        (Ok(Some(offset)), Some(finish)) => (offset, finish),
        (Err(failure), _) => return refuse(failure),
        _ => {
            return refuse(Failure::invalid_request(
                "An append needs Upload-Offset and Upload-Complete.",
            ));
        }
    };
    let status = match status_of(&state, &token, &id).await {
        Ok(status) => status,
        Err(failure) => return refused(failure),
    };
    let Some(answer) = Answer::parse(&status.client_metadata) else {
        return refuse(Failure::local(
            ErrorReason::UploadNotFound,
            "No such upload.",
        ));
    };
    // Lengths the request implies must agree with the resource's.
    let length = integer(&headers, "upload-length").ok().flatten();
    let body_length = headers::content_length(&headers).ok().flatten();
    let implied = [
        length,
        finish
            .then(|| body_length.map(|body| offset + body))
            .flatten(),
        (status.length > 0).then_some(status.length),
    ];
    let mut known = implied.into_iter().flatten();
    if let Some(first) = known.next()
        && known.any(|other| other != first)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            INCONSISTENT_LENGTH,
            "inconsistent length values for upload",
            serde_json::json!({}),
        );
    }
    if status.complete {
        return problem(
            StatusCode::BAD_REQUEST,
            COMPLETED_UPLOAD,
            "upload is already completed",
            serde_json::json!({}),
        );
    }
    let limits = answer.limits(&state);
    let written = write(&state, limits, &token, &id, offset, finish, request).await;
    let stored = match written {
        Ok(stored) => stored,
        Err(failure) if failure.reason() == Some(ErrorReason::OffsetMismatch) => {
            let expected = status_of(&state, &token, &id)
                .await
                .map_or(status.committed_size, |now| now.committed_size);
            let mut response = problem(
                StatusCode::CONFLICT,
                MISMATCHING_OFFSET,
                "offset from request does not match offset of resource",
                serde_json::json!({ "expected-offset": expected, "provided-offset": offset }),
            );
            set(&mut response, "upload-offset", &expected.to_string());
            return response;
        }
        Err(failure) if failure.reason() == Some(ErrorReason::SizeMismatch) => {
            return problem(
                StatusCode::BAD_REQUEST,
                INCONSISTENT_LENGTH,
                "inconsistent length values for upload",
                serde_json::json!({}),
            );
        }
        Err(failure) => {
            // The upload's own failure (its bytes refused) answers in the route's dialect.
            let mut response = AppError::new(answer.dialect(), failure).into_response();
            if finish {
                set(&mut response, "upload-complete", "?1");
            }
            return response;
        }
    };
    if !stored.complete {
        let mut response = StatusCode::NO_CONTENT.into_response();
        set(&mut response, "upload-complete", "?0");
        set(
            &mut response,
            "upload-offset",
            &stored.committed_size.to_string(),
        );
        return response;
    }
    let target = stored.target.clone().or(status.target).unwrap_or_default();
    let mut response = answer.render(&state, Some(&token), &target, stored).await;
    set(&mut response, "upload-complete", "?1");
    response
}

/// Cancels the upload.
#[utoipa::path(delete, path = "/api/resumable/{id}", tag = TAG,
    params(("id" = String, Path, description = "Upload resource ID")),
    responses((status = 204, description = "Cancelled"), (status = 404, description = "No such upload")))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = match token_of(&headers) {
        Ok(token) => token,
        Err(failure) => return refused(failure),
    };
    match state.ingest.cancel_upload(Some(&token), &id).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(status) => AppError::new(Dialect::Workspace, status).into_response(),
    }
}

/// Content type of an upload request that is not a form (the draft sends the file raw).
pub fn is_raw(headers: &HeaderMap) -> bool {
    headers::media_type(&headers::content_type(headers)) != "multipart/form-data"
        && headers.get(header::CONTENT_TYPE).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_a_session_came_from_is_read_back() {
        for answer in [
            Answer::ConcurV1,
            Answer::ReceiptV3 {
                created: true,
                json: false,
            },
            Answer::ReceiptV3 {
                created: false,
                json: true,
            },
            Answer::Workspace,
            Answer::ReceiptsV4,
        ] {
            assert_eq!(Answer::parse(&answer.tag()), Some(answer));
        }
        assert_eq!(Answer::parse("filename YQ=="), None);
    }

    #[test]
    fn upload_routes_are_known_by_their_paths() {
        assert!(is_upload_route("/api/image/v1.0/receipt"));
        assert!(is_upload_route("/api/image/v1.0/report/R1"));
        assert!(is_upload_route("/api/v3.0/expense/receiptimages"));
        assert!(is_upload_route(
            "/api/v1/client/workspace/w1/expenses/e1/receipt"
        ));
        assert!(!is_upload_route("/api/uploads/"));
        assert!(!is_upload_route("/healthz"));
    }
}
