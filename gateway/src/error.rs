//! Errors at the edge. A [`Failure`] says what went wrong (a gRPC code plus, when known, the
//! contract's `ErrorReason` and how long to wait before retrying); handlers return it with `?`,
//! and each router renders it in its [`Dialect`] ([`in_dialect`]); an [`AppError`] is a
//! failure rendered. The HTTP status comes from the contract's reason table,
//! [`http_status`]; bodies never carry backend internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imaging_proto::reasons;
use imaging_proto::v1::ErrorReason;
use serde::Serialize;
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt;

/// Message shown for every 500.
const INTERNAL_MESSAGE: &str = "An internal error occurred.";
/// Message shown for every 503.
const UNAVAILABLE_MESSAGE: &str = "The service is temporarily unavailable; retry shortly.";
/// `Retry-After` of a 503 whose cause said nothing about when to retry.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Which REST dialect renders an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Concur Image v1: XML `<Error>` documents.
    Concur,
    /// Concur Receipt Image v3 asked for JSON (`Accept: application/json`): the same fields
    /// as the `<Error>` document, `{"Message", "Server-Time", "Id"}`.
    ConcurJson,
    /// Workspace receipts: JSON `{"code", "message"}`.
    Workspace,
    /// Concur Receipts v4: JSON `{"code", "message"}`, and 415 for a type not accepted (as
    /// Concur's other dialects).
    ReceiptsV4,
    /// tus uploads: JSON `{"code", "message"}`, and 460 for a checksum that does not match
    /// (the tus checksum extension's status).
    Tus,
}

/// The HTTP status of a reason (or, without one, of a gRPC code): the contract's table
/// ([`imaging_proto::reasons`]), and the two places a dialect departs from it: Concur answers an
/// unsupported media type with 415, as its documentation says, and tus a checksum mismatch with
/// 460, as its checksum extension says.
///
/// Without a reason, only transport trouble (`UNAVAILABLE`, and `DEADLINE_EXCEEDED`/`CANCELLED`,
/// i.e. the ingest service did not answer in time) gives 503; everything else is 500.
pub fn http_status(dialect: Dialect, code: Code, reason: Option<ErrorReason>) -> StatusCode {
    let Some(reason) = reason else {
        return match code {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
    };
    if reason == ErrorReason::UnsupportedMediaType
        && matches!(
            dialect,
            Dialect::Concur | Dialect::ConcurJson | Dialect::ReceiptsV4
        )
    {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    if reason == ErrorReason::ChecksumMismatch && dialect == Dialect::Tus {
        return StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST);
    }
    StatusCode::from_u16(reasons::of(reason).http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// What went wrong, independent of the dialect.
#[derive(Debug, Clone)]
pub struct Failure {
    code: Code,
    reason: Option<ErrorReason>,
    /// Client-safe text (the ingest service keeps its messages client-safe).
    message: String,
    /// When to retry, if the service said (`RetryInfo`).
    retry_after: Option<Duration>,
    /// Log-only detail.
    detail: Option<String>,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let details = status.get_error_details();
        let reason = details
            .error_info()
            .filter(|info| info.domain == imaging_proto::ERROR_DOMAIN)
            .and_then(|info| ErrorReason::from_str_name(&info.reason));
        let retry_after = details.retry_info().and_then(|retry| retry.retry_delay);
        Failure {
            code: status.code(),
            reason,
            message: status.message().to_owned(),
            retry_after,
            detail: None,
        }
    }
}

impl Failure {
    /// A failure the gateway detects itself.
    pub fn local(reason: ErrorReason, message: impl Into<String>) -> Self {
        Failure {
            code: reasons::of(reason).grpc,
            reason: Some(reason),
            message: message.into(),
            retry_after: None,
            detail: None,
        }
    }

    /// A path ID outside `[A-Za-z0-9_$-]{1,128}`.
    pub fn invalid_id(what: &str) -> Self {
        Self::local(
            ErrorReason::InvalidId,
            format!("The {what} is not a valid ID."),
        )
    }

    /// A malformed request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::local(ErrorReason::InvalidRequest, message)
    }

    /// An upload over the limit.
    pub fn too_large(max_bytes: u64) -> Self {
        Self::local(
            ErrorReason::FileTooLarge,
            format!("The file is larger than {max_bytes} bytes."),
        )
    }

    /// A route that does not exist (unknown API version).
    pub fn route_not_found() -> Self {
        Self::local(ErrorReason::RouteNotFound, "Not found.")
    }

    /// Adds a log-only detail.
    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// The reason, if any.
    pub fn reason(&self) -> Option<ErrorReason> {
        self.reason
    }

    /// The HTTP status in `dialect`.
    pub fn status(&self, dialect: Dialect) -> StatusCode {
        http_status(dialect, self.code, self.reason)
    }

    /// `Retry-After` for a 503 or 429: what the service said, at least a second, whole seconds.
    fn retry_after(&self) -> u64 {
        let delay = self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
        (delay.as_secs() + u64::from(delay.subsec_nanos() > 0)).max(1)
    }

    /// The code and message clients see for `status`.
    fn public(&self, status: StatusCode) -> (&str, &str) {
        let code = self.reason.map_or("ERROR", |reason| reason.as_str_name());
        match status {
            StatusCode::INTERNAL_SERVER_ERROR => ("INTERNAL", INTERNAL_MESSAGE),
            StatusCode::SERVICE_UNAVAILABLE => (
                self.reason
                    .map_or("SERVICE_UNAVAILABLE", |reason| reason.as_str_name()),
                UNAVAILABLE_MESSAGE,
            ),
            _ => (
                code,
                if self.message.is_empty() {
                    status.canonical_reason().unwrap_or("Error")
                } else {
                    &self.message
                },
            ),
        }
    }
}

/// A failure a handler returned, on its way to its router's dialect layer ([`in_dialect`]).
#[derive(Debug, Clone)]
struct Unrendered(Failure);

/// A handler's failure becomes a response only through its router's [`in_dialect`]; without
/// one (a router wired wrong) it is a bare 500, which every route's tests would show.
impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        response.extensions_mut().insert(Unrendered(self));
        response
    }
}

/// `router` with its handlers' failures rendered in the dialect `pick` chooses from the
/// request's headers (Receipt Image v3 answers JSON to `Accept: application/json`, XML
/// otherwise).
pub fn in_dialect<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    pick: fn(&axum::http::HeaderMap) -> Dialect,
) -> axum::Router<S> {
    router.layer(axum::middleware::from_fn_with_state(pick, dialect_layer))
}

/// The layer of [`in_dialect`].
async fn dialect_layer(
    axum::extract::State(pick): axum::extract::State<fn(&axum::http::HeaderMap) -> Dialect>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let dialect = pick(request.headers());
    let mut response = next.run(request).await;
    match response.extensions_mut().remove::<Unrendered>() {
        Some(Unrendered(failure)) => AppError::new(dialect, failure).into_response(),
        None => response,
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
            Dialect::ConcurJson => {
                let body = serde_json::json!({
                    "Message": message,
                    "Server-Time": server_time(),
                    "Id": error_id,
                });
                (status, axum::Json(body)).into_response()
            }
            Dialect::Workspace | Dialect::Tus | Dialect::ReceiptsV4 => {
                let body = ErrorBody {
                    code: code.to_owned(),
                    message: message.to_owned(),
                };
                (status, axum::Json(body)).into_response()
            }
        };
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(failure.retry_after()),
            );
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

    use ErrorReason::*;

    fn status_with_reason(code: Code, reason: &str, message: &str) -> tonic::Status {
        let details = tonic_types::ErrorDetails::with_error_info(
            reason,
            imaging_proto::ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        tonic::Status::with_error_details(code, message, details)
    }

    #[test]
    fn every_reason_of_the_service_renders_as_the_contract_says_in_every_dialect() {
        for reason in reasons::all() {
            let wire = reasons::of(reason);
            let failure = Failure::from(status_with_reason(wire.grpc, reason.as_str_name(), "m"));
            assert_eq!(failure.reason(), Some(reason));
            for dialect in [Dialect::Concur, Dialect::ConcurJson, Dialect::Workspace] {
                let expected = match (reason, dialect) {
                    (UnsupportedMediaType, Dialect::Concur | Dialect::ConcurJson) => 415,
                    _ => wire.http,
                };
                assert_eq!(
                    failure.status(dialect).as_u16(),
                    expected,
                    "{reason:?} {dialect:?}"
                );
            }
        }
    }

    #[test]
    fn a_failure_the_gateway_finds_itself_carries_the_contract_code() {
        for failure in [
            Failure::invalid_id("receipt ID"),
            Failure::invalid_request("bad"),
            Failure::too_large(10),
            Failure::route_not_found(),
        ] {
            let reason = failure.reason().unwrap();
            assert_eq!(failure.code, reasons::of(reason).grpc, "{reason:?}");
        }
    }

    #[test]
    fn a_reason_this_gateway_does_not_know_falls_back_on_the_code() {
        let failure = Failure::from(status_with_reason(
            Code::InvalidArgument,
            "SOMETHING_NEW",
            "m",
        ));
        assert_eq!(failure.reason(), None);
        assert_eq!(failure.status(Dialect::Concur), 500);
        let failure = Failure::from(status_with_reason(Code::Unavailable, "SOMETHING_NEW", "m"));
        assert_eq!(failure.status(Dialect::Workspace), 503);
    }

    #[tokio::test]
    async fn retry_info_becomes_retry_after_in_whole_seconds() {
        let mut details = tonic_types::ErrorDetails::with_error_info(
            "OVERLOADED",
            imaging_proto::ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        details.set_retry_info(Some(Duration::from_millis(2500)));
        let status = tonic::Status::with_error_details(Code::Unavailable, "busy", details);
        let response = AppError::new(Dialect::Workspace, status).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let body = body_of(response).await;
        assert!(body.contains("\"code\":\"OVERLOADED\""), "{body}");
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

    #[tokio::test]
    async fn a_routers_layer_renders_its_handlers_failures_in_the_dialect_it_picks() {
        use axum::routing::get;
        use tower::ServiceExt;
        fn pick(headers: &axum::http::HeaderMap) -> Dialect {
            if headers.contains_key(header::ACCEPT) {
                Dialect::ConcurJson
            } else {
                Dialect::Concur
            }
        }
        async fn refuse() -> Result<&'static str, Failure> {
            Err(Failure::invalid_request("no"))
        }
        let router = in_dialect(axum::Router::new().route("/", get(refuse)), pick);
        let request = || axum::http::Request::get("/");
        let xml = router
            .clone()
            .oneshot(request().body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(xml.status(), 400);
        assert_eq!(xml.headers()[header::CONTENT_TYPE], "application/xml");
        assert!(
            body_of(xml)
                .await
                .starts_with("<Error><Message>no</Message>")
        );
        let json = router
            .oneshot(
                request()
                    .header(header::ACCEPT, "application/json")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(json.status(), 400);
        let body: serde_json::Value = serde_json::from_str(&body_of(json).await).unwrap();
        assert_eq!(body["Message"], "no");
        // Without a layer, a failure shows nothing of itself.
        let bare = Failure::invalid_request("a detail").into_response();
        assert_eq!(bare.status(), 500);
        assert!(body_of(bare).await.is_empty());
    }
}
