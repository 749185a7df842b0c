//! Errors at the edge. A [`Failure`] says what went wrong (a gRPC code plus, when known, the
//! `ErrorInfo` reason); an [`AppError`] is a failure rendered in one [`Dialect`]. The HTTP status
//! comes from one function, [`http_status`]; bodies never carry backend internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt;

/// Reasons the gateway produces itself, besides those of the ingest service's contract.
pub mod reason {
    /// A path ID is outside `[A-Za-z0-9_$-]{1,128}`.
    pub const INVALID_ID: &str = "INVALID_ID";
    /// The request is malformed (bad digest header, unreadable body, bad multipart).
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// The multipart body has no `file` field.
    pub const MISSING_FILE: &str = "MISSING_FILE";
    /// The upload is over the byte limit.
    pub const FILE_TOO_LARGE: &str = "FILE_TOO_LARGE";
    /// An unknown API version in a Concur path.
    pub const ROUTE_NOT_FOUND: &str = "ROUTE_NOT_FOUND";
}

/// Message shown for every 500.
const INTERNAL_MESSAGE: &str = "An internal error occurred.";
/// Message shown for every 503.
const UNAVAILABLE_MESSAGE: &str = "The service is temporarily unavailable; retry shortly.";

/// Which REST dialect renders an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Concur Image v1: XML `<Error>` documents.
    Concur,
    /// Workspace receipts: JSON `{"code", "message"}`.
    Workspace,
}

/// The one mapping from a gRPC code and `ErrorInfo` reason to an HTTP status.
///
/// The reason decides when there is one; without one, only transport trouble (`UNAVAILABLE`,
/// and `DEADLINE_EXCEEDED`/`CANCELLED`, i.e. the ingest service did not answer in time) gives
/// 503; everything else is 500. `IDEMPOTENCY_KEY_REUSED` is 422, as the IETF
/// `Idempotency-Key` draft prescribes for a key reused with another payload.
pub fn http_status(dialect: Dialect, code: Code, reason: Option<&str>) -> StatusCode {
    match reason {
        Some("INVALID_ID" | "INVALID_REQUEST" | "MISSING_FILE" | "CHUNK_TOO_LARGE") => {
            StatusCode::BAD_REQUEST
        }
        Some(token) if token.starts_with("TOKEN_") => StatusCode::UNAUTHORIZED,
        Some("PERMISSION_DENIED") => StatusCode::FORBIDDEN,
        Some("TARGET_NOT_FOUND" | "IMAGE_NOT_FOUND" | "ROUTE_NOT_FOUND") => StatusCode::NOT_FOUND,
        Some("ALREADY_ATTACHED") => StatusCode::CONFLICT,
        Some("FILE_TOO_LARGE") => StatusCode::PAYLOAD_TOO_LARGE,
        Some("UNSUPPORTED_MEDIA_TYPE") => match dialect {
            Dialect::Concur => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Dialect::Workspace => StatusCode::UNPROCESSABLE_ENTITY,
        },
        Some(
            "CONTENT_TYPE_MISMATCH"
            | "CORRUPT_IMAGE"
            | "ENCRYPTED_PDF"
            | "CHECKSUM_MISMATCH"
            | "SIZE_MISMATCH"
            | "IDEMPOTENCY_KEY_REUSED",
        ) => StatusCode::UNPROCESSABLE_ENTITY,
        Some("QUOTA_EXCEEDED") => StatusCode::INSUFFICIENT_STORAGE,
        Some("BUSY" | "STORAGE_UNAVAILABLE" | "QUOTA_UNAVAILABLE") => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
        None => match code {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

/// What went wrong, independent of the dialect.
#[derive(Debug, Clone)]
pub struct Failure {
    code: Code,
    reason: Option<String>,
    /// Client-safe text (the ingest service keeps its messages client-safe).
    message: String,
    /// Log-only detail.
    detail: Option<String>,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let reason = status
            .get_details_error_info()
            .filter(|info| info.domain == imaging_proto::ERROR_DOMAIN)
            .map(|info| info.reason);
        Failure {
            code: status.code(),
            reason,
            message: status.message().to_owned(),
            detail: None,
        }
    }
}

impl Failure {
    /// A failure the gateway detects itself.
    pub fn local(code: Code, reason: &str, message: impl Into<String>) -> Self {
        Failure {
            code,
            reason: Some(reason.to_owned()),
            message: message.into(),
            detail: None,
        }
    }

    /// A path ID outside `[A-Za-z0-9_$-]{1,128}`.
    pub fn invalid_id(what: &str) -> Self {
        Self::local(
            Code::InvalidArgument,
            reason::INVALID_ID,
            format!("The {what} is not a valid ID."),
        )
    }

    /// A malformed request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::local(Code::InvalidArgument, reason::INVALID_REQUEST, message)
    }

    /// An upload over the limit.
    pub fn too_large(max_bytes: u64) -> Self {
        Self::local(
            Code::OutOfRange,
            reason::FILE_TOO_LARGE,
            format!("The file is larger than {max_bytes} bytes."),
        )
    }

    /// A route that does not exist (unknown API version).
    pub fn route_not_found() -> Self {
        Self::local(Code::NotFound, reason::ROUTE_NOT_FOUND, "Not found.")
    }

    /// Adds a log-only detail.
    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// The `ErrorInfo` reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The HTTP status in `dialect`.
    pub fn status(&self, dialect: Dialect) -> StatusCode {
        http_status(dialect, self.code, self.reason())
    }

    /// The code and message clients see for `status`.
    fn public(&self, status: StatusCode) -> (&str, &str) {
        match status {
            StatusCode::INTERNAL_SERVER_ERROR => ("INTERNAL", INTERNAL_MESSAGE),
            StatusCode::SERVICE_UNAVAILABLE => (
                self.reason().unwrap_or("SERVICE_UNAVAILABLE"),
                UNAVAILABLE_MESSAGE,
            ),
            _ => (
                self.reason().unwrap_or("ERROR"),
                if self.message.is_empty() {
                    status.canonical_reason().unwrap_or("Error")
                } else {
                    &self.message
                },
            ),
        }
    }
}

/// The workspace dialect's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `QUOTA_EXCEEDED`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// A failure rendered in one dialect: the one error type handlers return.
#[derive(Debug)]
pub struct AppError {
    dialect: Dialect,
    failure: Failure,
}

impl AppError {
    /// Renders `failure` in `dialect`.
    pub fn new(dialect: Dialect, failure: impl Into<Failure>) -> Self {
        AppError {
            dialect,
            failure: failure.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.failure.status(self.dialect);
        let error_id = uuid::Uuid::new_v4().to_string();
        let failure = &self.failure;
        if status.is_server_error() {
            tracing::error!(%error_id, %status, grpc_code = ?failure.code, reason = ?failure.reason,
                error_message = %failure.message, detail = ?failure.detail, "request failed");
        } else {
            tracing::info!(%error_id, %status, reason = ?failure.reason,
                error_message = %failure.message, detail = ?failure.detail, "request refused");
        }
        let (code, message) = failure.public(status);
        let mut response = match self.dialect {
            Dialect::Concur => {
                let body = crate::xml::error(message, &server_time(), &error_id);
                (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
            }
            Dialect::Workspace => {
                let body = ErrorBody {
                    code: code.to_owned(),
                    message: message.to_owned(),
                };
                (status, axum::Json(body)).into_response()
            }
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Ok(value) = HeaderValue::from_str(&error_id) {
            response.headers_mut().insert("x-error-id", value);
        }
        response
    }
}

/// Now, as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
fn server_time() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0);
    now.ok()
        .and_then(|now| {
            now.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const TABLE: &[(&str, Code, u16, u16)] = &[
        ("INVALID_ID", Code::InvalidArgument, 400, 400),
        ("INVALID_REQUEST", Code::InvalidArgument, 400, 400),
        ("MISSING_FILE", Code::InvalidArgument, 400, 400),
        ("CHUNK_TOO_LARGE", Code::InvalidArgument, 400, 400),
        ("TOKEN_MISSING", Code::Unauthenticated, 401, 401),
        ("TOKEN_INVALID", Code::Unauthenticated, 401, 401),
        ("TOKEN_EXPIRED", Code::Unauthenticated, 401, 401),
        ("PERMISSION_DENIED", Code::PermissionDenied, 403, 403),
        ("TARGET_NOT_FOUND", Code::NotFound, 404, 404),
        ("IMAGE_NOT_FOUND", Code::NotFound, 404, 404),
        ("ROUTE_NOT_FOUND", Code::NotFound, 404, 404),
        ("ALREADY_ATTACHED", Code::AlreadyExists, 409, 409),
        ("FILE_TOO_LARGE", Code::OutOfRange, 413, 413),
        ("UNSUPPORTED_MEDIA_TYPE", Code::InvalidArgument, 415, 422),
        ("CONTENT_TYPE_MISMATCH", Code::InvalidArgument, 422, 422),
        ("CORRUPT_IMAGE", Code::InvalidArgument, 422, 422),
        ("ENCRYPTED_PDF", Code::InvalidArgument, 422, 422),
        ("SIZE_MISMATCH", Code::InvalidArgument, 422, 422),
        ("CHECKSUM_MISMATCH", Code::InvalidArgument, 422, 422),
        ("IDEMPOTENCY_KEY_REUSED", Code::FailedPrecondition, 422, 422),
        ("QUOTA_EXCEEDED", Code::ResourceExhausted, 507, 507),
        ("BUSY", Code::Unavailable, 503, 503),
        ("STORAGE_UNAVAILABLE", Code::Unavailable, 503, 503),
        ("QUOTA_UNAVAILABLE", Code::Unavailable, 503, 503),
        ("INTERNAL", Code::Internal, 500, 500),
        ("SOMETHING_NEW", Code::InvalidArgument, 500, 500),
    ];

    fn status_with_reason(code: Code, reason: &str, message: &str) -> tonic::Status {
        let details = tonic_types::ErrorDetails::with_error_info(
            reason,
            imaging_proto::ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        tonic::Status::with_error_details(code, message, details)
    }

    #[test]
    fn every_reason_maps_to_its_status_in_both_dialects() {
        for &(reason, code, concur, workspace) in TABLE {
            let failure = Failure::from(status_with_reason(code, reason, "m"));
            assert_eq!(failure.reason(), Some(reason));
            assert_eq!(failure.status(Dialect::Concur).as_u16(), concur, "{reason}");
            assert_eq!(
                failure.status(Dialect::Workspace).as_u16(),
                workspace,
                "{reason}"
            );
        }
    }

    #[test]
    fn codes_without_a_reason_are_503_for_transport_trouble_and_500_otherwise() {
        for dialect in [Dialect::Concur, Dialect::Workspace] {
            for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
                assert_eq!(http_status(dialect, code, None), 503);
            }
            for code in [
                Code::Unknown,
                Code::Internal,
                Code::InvalidArgument,
                Code::NotFound,
            ] {
                assert_eq!(http_status(dialect, code, None), 500);
            }
        }
    }

    #[test]
    fn a_reason_from_another_domain_is_ignored() {
        let details = tonic_types::ErrorDetails::with_error_info(
            "QUOTA_EXCEEDED",
            "other.v1",
            std::collections::HashMap::<String, String>::new(),
        );
        let status = tonic::Status::with_error_details(Code::ResourceExhausted, "x", details);
        let failure = Failure::from(status);
        assert_eq!(failure.reason(), None);
        assert_eq!(failure.status(Dialect::Workspace), 500);
    }

    async fn body_of(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_concur_error_is_an_error_document_with_a_fresh_id() {
        let failure = Failure::from(status_with_reason(
            Code::AlreadyExists,
            "ALREADY_ATTACHED",
            "the entry already has an image",
        ));
        let response = AppError::new(Dialect::Concur, failure).into_response();
        assert_eq!(response.status(), 409);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/xml");
        let error_id = response.headers()["x-error-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = body_of(response).await;
        let rest = body
            .strip_prefix("<Error><Message>the entry already has an image</Message><Server-Time>")
            .unwrap();
        let (time, rest) = rest.split_once("</Server-Time><Id>").unwrap();
        assert_eq!(rest, format!("{error_id}</Id></Error>"));
        // e.g. 2024-05-01T12:00:00Z
        let shape: String = time
            .chars()
            .map(|c| if c.is_ascii_digit() { 'd' } else { c })
            .collect();
        assert_eq!(shape, "dddd-dd-ddTdd:dd:ddZ", "{time}");
    }

    #[tokio::test]
    async fn a_workspace_error_is_json_with_the_reason_as_code() {
        let failure = Failure::from(status_with_reason(
            Code::ResourceExhausted,
            "QUOTA_EXCEEDED",
            "the workspace quota is full",
        ));
        let response = AppError::new(Dialect::Workspace, failure).into_response();
        assert_eq!(response.status(), 507);
        let body: serde_json::Value = serde_json::from_str(&body_of(response).await).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": "QUOTA_EXCEEDED", "message": "the workspace quota is full"})
        );
    }

    #[tokio::test]
    async fn internal_and_unavailable_errors_hide_backend_messages() {
        let secret = "redis at 10.0.0.5:6379 refused /var/lib/x";
        let internal = AppError::new(
            Dialect::Workspace,
            status_with_reason(Code::Internal, "INTERNAL", secret),
        )
        .into_response();
        assert_eq!(internal.status(), 500);
        let body = body_of(internal).await;
        assert!(!body.contains("redis"), "{body}");
        assert!(body.contains("\"code\":\"INTERNAL\""), "{body}");

        let unavailable =
            AppError::new(Dialect::Concur, tonic::Status::unavailable(secret)).into_response();
        assert_eq!(unavailable.status(), 503);
        assert_eq!(unavailable.headers()[header::RETRY_AFTER], "1");
        let body = body_of(unavailable).await;
        assert!(!body.contains("redis"), "{body}");
    }
}
