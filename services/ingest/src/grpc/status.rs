//! The one place where domain errors become `tonic::Status`: a gRPC code, a client-safe message
//! and a `google.rpc.ErrorInfo` with the stable reason. Internal causes are logged here, once,
//! and never sent to the client.

use crate::error::IngestError;
use imaging_proto::ERROR_DOMAIN;
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

impl From<IngestError> for Status {
    fn from(err: IngestError) -> Self {
        use IngestError::*;
        let mut metadata = HashMap::new();
        let code = match &err {
            TokenMissing | TokenInvalid | TokenExpired => Code::Unauthenticated,
            PermissionDenied(_) => Code::PermissionDenied,
            InvalidId(_) | InvalidRequest(_) | MissingFile | ChunkTooLarge { .. } => {
                Code::InvalidArgument
            }
            FileTooLarge { limit } => {
                metadata.insert("limit".to_owned(), limit.to_string());
                Code::OutOfRange
            }
            UnsupportedMediaType(_) | ContentTypeMismatch { .. } | CorruptImage | EncryptedPdf => {
                Code::InvalidArgument
            }
            TooManyPixels { width, height } => {
                metadata.insert("cause".to_owned(), "TOO_MANY_PIXELS".to_owned());
                metadata.insert("width".to_owned(), width.to_string());
                metadata.insert("height".to_owned(), height.to_string());
                Code::InvalidArgument
            }
            SizeMismatch { .. } | ChecksumMismatch => Code::InvalidArgument,
            IdempotencyKeyReused => Code::FailedPrecondition,
            AlreadyAttached => Code::AlreadyExists,
            TargetNotFound(_) | ImageNotFound => Code::NotFound,
            QuotaExceeded {
                limit,
                used,
                requested,
            } => {
                metadata.insert("limit".to_owned(), limit.to_string());
                metadata.insert("used".to_owned(), used.to_string());
                metadata.insert("requested".to_owned(), requested.to_string());
                Code::ResourceExhausted
            }
            Busy | Overloaded | ShuttingDown => Code::Unavailable,
            StorageUnavailable(cause) => {
                tracing::error!(error = %cause, "storage failure");
                Code::Unavailable
            }
            StateUnavailable(cause) => {
                tracing::error!(error = %cause, "quota store failure");
                Code::Unavailable
            }
            Internal(cause) => {
                tracing::error!(error = %cause, "internal failure");
                Code::Internal
            }
        };
        let message = match &err {
            StorageUnavailable(_) => "storage is unavailable, retry later".to_owned(),
            StateUnavailable(_) => "the quota store is unavailable, retry later".to_owned(),
            Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let details = ErrorDetails::with_error_info(err.reason(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;

    #[test]
    fn backend_messages_never_reach_the_client() {
        let status: Status = IngestError::StorageUnavailable(StorageError::Unavailable(
            "10.0.0.7:9000 refused /data/x".into(),
        ))
        .into();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.0.0.7"));
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "STORAGE_UNAVAILABLE");
        assert_eq!(info.domain, ERROR_DOMAIN);
    }

    #[test]
    fn quota_errors_carry_the_numbers() {
        let status: Status = IngestError::QuotaExceeded {
            limit: 10,
            used: 8,
            requested: 5,
        }
        .into();
        assert_eq!(status.code(), Code::ResourceExhausted);
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "QUOTA_EXCEEDED");
        assert_eq!(info.metadata.get("limit").map(String::as_str), Some("10"));
    }
}
