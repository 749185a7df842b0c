//! The one place where domain errors become `tonic::Status`: a gRPC code, a client-safe message,
//! a `google.rpc.ErrorInfo` with the stable reason and, where a client can act on them, richer
//! details (`QuotaFailure`, `RetryInfo`, `BadRequest`). Internal causes are logged here, once,
//! and never sent to the client.

use crate::error::IngestError;
use imaging_proto::v1::ErrorReason;
use imaging_proto::{ERROR_DOMAIN, reasons};
use std::collections::HashMap;
use std::time::Duration;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

/// How long clients are told to wait before retrying a refusal that heals by itself.
const RETRY_AFTER_LOAD: Duration = Duration::from_secs(1);
/// The same for an unreachable backend.
const RETRY_AFTER_OUTAGE: Duration = Duration::from_secs(5);

impl From<IngestError> for Status {
    fn from(err: IngestError) -> Self {
        use IngestError::*;
        let reason = err.reason();
        let mut metadata = HashMap::new();
        let mut details = ErrorDetails::new();
        match &err {
            InvalidId(field) => {
                details
                    .add_bad_request_violation(*field, "not a valid ID: 1-128 of [A-Za-z0-9_$-]");
            }
            InvalidRequest { field, message } if !field.is_empty() => {
                details.add_bad_request_violation(*field, message.clone());
            }
            FileTooLarge { limit } => {
                metadata.insert("limit".to_owned(), limit.to_string());
            }
            TooManyOpenUploads { limit } => {
                metadata.insert("limit".to_owned(), limit.to_string());
            }
            DuplicateImage { image_id } => {
                metadata.insert("image_id".to_owned(), image_id.clone());
            }
            OffsetMismatch {
                committed,
                provided,
                complete,
            } => {
                metadata.insert("committed_size".to_owned(), committed.to_string());
                metadata.insert("provided_offset".to_owned(), provided.to_string());
                metadata.insert("complete".to_owned(), complete.to_string());
            }
            ReportTooLarge { what, limit } => {
                metadata.insert("bound".to_owned(), (*what).to_owned());
                metadata.insert("limit".to_owned(), limit.to_string());
            }
            TooComplex { what } => {
                metadata.insert("cause".to_owned(), "TOO_COMPLEX".to_owned());
                metadata.insert("limit".to_owned(), (*what).to_owned());
            }
            TooManyPixels { width, height } => {
                metadata.insert("cause".to_owned(), "TOO_MANY_PIXELS".to_owned());
                metadata.insert("width".to_owned(), width.to_string());
                metadata.insert("height".to_owned(), height.to_string());
            }
            QuotaExceeded {
                workspace,
                limit,
                used,
                requested,
            } => {
                metadata.insert("limit".to_owned(), limit.to_string());
                metadata.insert("used".to_owned(), used.to_string());
                metadata.insert("requested".to_owned(), requested.to_string());
                details.add_quota_failure_violation(
                    format!("workspace:{workspace}"),
                    format!("{used} of {limit} bytes used; {requested} more requested"),
                );
            }
            Busy | Overloaded | ShuttingDown | TooManyUploads(_) => {
                details.set_retry_info(Some(RETRY_AFTER_LOAD));
            }
            Storage(cause) => {
                tracing::error!(error = %cause, transient = cause.is_transient(), "storage failure");
            }
            State(cause) => {
                tracing::error!(error = %cause, transient = cause.is_transient(), "state backend failure");
            }
            Internal(cause) => tracing::error!(error = %cause, "internal failure"),
            _ => {}
        }
        if matches!(
            reason,
            ErrorReason::StorageUnavailable | ErrorReason::QuotaUnavailable
        ) {
            details.set_retry_info(Some(RETRY_AFTER_OUTAGE));
        }
        let message = err.public_message();
        details.set_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata);
        Status::with_error_details(reasons::of(reason).grpc, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateError;
    use crate::storage::StorageError;
    use tonic::Code;

    #[test]
    fn backend_messages_never_reach_the_client_and_outages_say_when_to_retry() {
        let status: Status = IngestError::Storage(StorageError::Unavailable(
            "10.0.0.7:9000 refused /data/x".into(),
        ))
        .into();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.0.0.7"));
        let details = status.get_error_details();
        let info = details.error_info().cloned().unwrap();
        assert_eq!(info.reason, "STORAGE_UNAVAILABLE");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert!(details.retry_info().is_some());
    }

    #[test]
    fn permanent_backend_failures_are_internal_and_not_retryable() {
        for err in [
            IngestError::Storage(StorageError::Backend("PUT x: HTTP 403".into())),
            IngestError::Storage(StorageError::InvalidKey("../x".into())),
            IngestError::State(StateError::Data("bad json".into())),
        ] {
            let status = Status::from(err);
            assert_eq!(status.code(), Code::Internal);
            assert_eq!(status.message(), "internal error");
            let details = status.get_error_details();
            assert_eq!(details.error_info().unwrap().reason, "INTERNAL");
            assert!(details.retry_info().is_none());
        }
    }

    #[test]
    fn quota_errors_carry_the_numbers_and_a_quota_failure() {
        let status: Status = IngestError::QuotaExceeded {
            workspace: "w1".into(),
            limit: 10,
            used: 8,
            requested: 5,
        }
        .into();
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        let info = details.error_info().cloned().unwrap();
        assert_eq!(info.reason, "QUOTA_EXCEEDED");
        assert_eq!(info.metadata.get("limit").map(String::as_str), Some("10"));
        let quota = details.quota_failure().unwrap();
        assert_eq!(quota.violations[0].subject, "workspace:w1");
    }

    #[test]
    fn load_refusals_carry_retry_info_and_bad_ids_name_their_field() {
        for err in [
            IngestError::Overloaded,
            IngestError::ShuttingDown,
            IngestError::Busy,
        ] {
            let status = Status::from(err);
            assert_eq!(status.code(), Code::Unavailable);
            assert!(status.get_error_details().retry_info().is_some());
        }
        let status = Status::from(IngestError::InvalidId("target.id"));
        let bad = status.get_error_details().bad_request().cloned().unwrap();
        assert_eq!(bad.field_violations[0].field, "target.id");
    }
}
