//! The domain error of an ingest operation. Each variant has a stable machine-readable reason
//! from the contract's `ErrorReason` enum; the gRPC edge (`grpc::status`) owns the mapping to
//! status codes and details.

use crate::state::StateError;
use crate::storage::StorageError;
use imaging_pipeline::PipelineError;
use imaging_proto::v1::ErrorReason;

/// Why an ingest operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No credentials were sent.
    #[error("missing bearer token")]
    TokenMissing,
    /// The token does not verify.
    #[error("invalid token")]
    TokenInvalid,
    /// The token's `exp` has passed.
    #[error("token expired")]
    TokenExpired,
    /// The caller may not act on this target.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// An ID is empty or has characters outside `[A-Za-z0-9_$-]`; names the request field.
    #[error("invalid {0}")]
    InvalidId(&'static str),
    /// The request is malformed (stream order, missing target, ...); `field` names the request
    /// field at fault, or is empty when none is.
    #[error("{message}")]
    InvalidRequest {
        /// The field at fault, e.g. `idempotency_key` (empty if none).
        field: &'static str,
        /// Client-safe explanation.
        message: String,
    },
    /// The stream carried no bytes.
    #[error("no file bytes were sent")]
    MissingFile,
    /// A chunk is over the chunk limit.
    #[error("chunk of {size} bytes is over the {limit}-byte chunk limit")]
    ChunkTooLarge { size: usize, limit: usize },
    /// The upload is over the size limit.
    #[error("file is larger than {limit} bytes")]
    FileTooLarge { limit: u64 },
    /// The append would take the report past a bound (`"bytes"` or `"pages"`).
    #[error("the report would have more than {limit} {what}")]
    ReportTooLarge { what: &'static str, limit: u64 },
    /// The declared content type is not accepted for this target.
    #[error("content type {0:?} is not accepted here")]
    UnsupportedMediaType(String),
    /// The file is of an accepted type but uses a feature that is not read; names it.
    #[error("{0} is not supported")]
    UnsupportedVariant(&'static str),
    /// The bytes are not of the declared type.
    #[error("the file's content does not match its declared type {declared}")]
    ContentTypeMismatch { declared: &'static str },
    /// The file does not decode or parse.
    #[error("the file is corrupt or cannot be decoded")]
    CorruptImage,
    /// The image claims more pixels than allowed.
    #[error("the image is {width}x{height} pixels, over the pixel limit")]
    TooManyPixels { width: u32, height: u32 },
    /// Parsing or decoding the file would cost more than the limits allow (`what` names the
    /// limit); refused before the memory is spent.
    #[error("the file is too complex to process (over the limit of {what})")]
    TooComplex { what: &'static str },
    /// The PDF is encrypted or password protected.
    #[error("encrypted or password-protected PDFs are not accepted")]
    EncryptedPdf,
    /// `declared_size` differs from what arrived.
    #[error("declared size {declared} differs from the {received} bytes received")]
    SizeMismatch { declared: u64, received: u64 },
    /// `sha256` differs from what arrived.
    #[error("sha256 of the received bytes does not match the one declared")]
    ChecksumMismatch,
    /// The idempotency key was used for other bytes or another target.
    #[error("idempotency key was already used for a different upload")]
    IdempotencyKeyReused,
    /// The entry or invoice already has its image.
    #[error("an image is already attached to this target")]
    AlreadyAttached,
    /// The workspace refuses bytes it holds already, and holds these (as `image_id`).
    #[error("the workspace already holds this file")]
    DuplicateImage {
        /// The earlier image.
        image_id: String,
    },
    /// The target is registered already, to another workspace or owner.
    #[error("the target is registered to another workspace or owner")]
    TargetConflict,
    /// The target or workspace is not registered.
    #[error("{0} not found")]
    TargetNotFound(&'static str),
    /// The target has no image.
    #[error("no image found")]
    ImageNotFound,
    /// The workspace quota cannot hold the upload.
    #[error(
        "workspace storage quota exceeded ({used} of {limit} bytes used, {requested} more requested)"
    )]
    QuotaExceeded {
        workspace: String,
        limit: u64,
        used: u64,
        requested: u64,
    },
    /// The target stayed locked by other uploads for too long.
    #[error("target is busy, retry later")]
    Busy,
    /// The caller (`"user"` or `"workspace"`) has as many uploads in flight as it may.
    #[error("too many uploads in flight for this {0}, retry when one ends")]
    TooManyUploads(&'static str),
    /// The upload stream sent nothing for too long.
    #[error("the upload stream sent nothing for too long")]
    UploadTimeout,
    /// No such upload session for this caller.
    #[error("no such upload")]
    UploadNotFound,
    /// A write to a session does not start at its committed size, or the session is complete.
    #[error("the upload's committed size is {committed} bytes; this write does not continue it")]
    OffsetMismatch {
        /// The session's committed size.
        committed: u64,
        /// The offset the write named.
        provided: u64,
        /// True if the session is complete (nothing more can be written).
        complete: bool,
    },
    /// The caller has as many sessions open as it may.
    #[error("{limit} upload sessions are open already; complete or cancel one first")]
    TooManyOpenUploads { limit: usize },
    /// Too many uploads in flight; retry shortly.
    #[error("the service is at capacity, retry shortly")]
    Overloaded,
    /// The service is draining before it stops.
    #[error("the service is shutting down, retry on another instance")]
    ShuttingDown,
    /// Object storage failed: unreachable or failing on its side (retryable), or refusing the
    /// request (permanent, e.g. access denied).
    #[error("storage failure")]
    Storage(#[source] StorageError),
    /// The state backend (quotas, records, idempotency results, locks) failed: unreachable
    /// (retryable; the wire reason is `QUOTA_UNAVAILABLE`, the name it has had since the backend
    /// held only quotas) or unreadable data (permanent).
    #[error("state backend failure")]
    State(#[source] StateError),
    /// Anything else; the message is for logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// The stable reason sent in `google.rpc.ErrorInfo`.
    pub fn reason(&self) -> ErrorReason {
        use IngestError::*;
        match self {
            TokenMissing => ErrorReason::TokenMissing,
            TokenInvalid => ErrorReason::TokenInvalid,
            TokenExpired => ErrorReason::TokenExpired,
            PermissionDenied(_) => ErrorReason::PermissionDenied,
            InvalidId(_) => ErrorReason::InvalidId,
            InvalidRequest { .. } => ErrorReason::InvalidRequest,
            MissingFile => ErrorReason::MissingFile,
            ChunkTooLarge { .. } => ErrorReason::ChunkTooLarge,
            FileTooLarge { .. } => ErrorReason::FileTooLarge,
            ReportTooLarge { .. } => ErrorReason::ReportTooLarge,
            UnsupportedMediaType(_) | UnsupportedVariant(_) => ErrorReason::UnsupportedMediaType,
            ContentTypeMismatch { .. } => ErrorReason::ContentTypeMismatch,
            CorruptImage | TooManyPixels { .. } | TooComplex { .. } => ErrorReason::CorruptImage,
            EncryptedPdf => ErrorReason::EncryptedPdf,
            SizeMismatch { .. } => ErrorReason::SizeMismatch,
            ChecksumMismatch => ErrorReason::ChecksumMismatch,
            IdempotencyKeyReused => ErrorReason::IdempotencyKeyReused,
            AlreadyAttached => ErrorReason::AlreadyAttached,
            DuplicateImage { .. } => ErrorReason::DuplicateImage,
            TargetConflict => ErrorReason::TargetConflict,
            TargetNotFound(_) => ErrorReason::TargetNotFound,
            ImageNotFound => ErrorReason::ImageNotFound,
            QuotaExceeded { .. } => ErrorReason::QuotaExceeded,
            Busy => ErrorReason::Busy,
            Overloaded => ErrorReason::Overloaded,
            TooManyUploads(_) => ErrorReason::TooManyUploads,
            UploadTimeout => ErrorReason::UploadTimeout,
            UploadNotFound => ErrorReason::UploadNotFound,
            OffsetMismatch { .. } => ErrorReason::OffsetMismatch,
            TooManyOpenUploads { .. } => ErrorReason::TooManyOpenUploads,
            ShuttingDown => ErrorReason::ShuttingDown,
            Storage(err) if err.is_transient() => ErrorReason::StorageUnavailable,
            State(err) if err.is_transient() => ErrorReason::QuotaUnavailable,
            Storage(_) | State(_) | Internal(_) => ErrorReason::Internal,
        }
    }
}

impl IngestError {
    /// True if the same request may succeed later (an outage, load, or an internal failure),
    /// false if it is refused for what it is.
    pub fn may_heal(&self) -> bool {
        use tonic::Code;
        matches!(
            imaging_proto::reasons::of(self.reason()).grpc,
            Code::Unavailable | Code::Internal
        ) || matches!(self, IngestError::TooManyUploads(_))
    }

    /// What a client is told: the error's own words, but never a backend's or an internal
    /// cause.
    pub fn public_message(&self) -> String {
        match self.reason() {
            ErrorReason::StorageUnavailable => "storage is unavailable, retry later".to_owned(),
            ErrorReason::QuotaUnavailable => {
                "the quota store is unavailable, retry later".to_owned()
            }
            ErrorReason::Internal => "internal error".to_owned(),
            _ => self.to_string(),
        }
    }

    /// A malformed request, blaming `field` (empty: no particular field).
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        IngestError::InvalidRequest {
            field,
            message: message.into(),
        }
    }
}

impl From<PipelineError> for IngestError {
    fn from(err: PipelineError) -> Self {
        match err {
            PipelineError::UnsupportedMediaType => {
                IngestError::UnsupportedMediaType("this conversion".to_owned())
            }
            PipelineError::ContentTypeMismatch { declared, .. } => {
                IngestError::ContentTypeMismatch {
                    declared: declared.mime(),
                }
            }
            PipelineError::Corrupt(_) => IngestError::CorruptImage,
            PipelineError::TooManyPixels { width, height } => {
                IngestError::TooManyPixels { width, height }
            }
            PipelineError::EncryptedPdf => IngestError::EncryptedPdf,
            PipelineError::Unsupported(what) => IngestError::UnsupportedVariant(what),
            PipelineError::TooComplex { what } => IngestError::TooComplex { what },
        }
    }
}

impl From<StorageError> for IngestError {
    fn from(err: StorageError) -> Self {
        IngestError::Storage(err)
    }
}

impl From<StateError> for IngestError {
    fn from(err: StateError) -> Self {
        IngestError::State(err)
    }
}

impl From<crate::janitor::JanitorError> for IngestError {
    fn from(err: crate::janitor::JanitorError) -> Self {
        match err {
            crate::janitor::JanitorError::Storage(err) => err.into(),
            crate::janitor::JanitorError::State(err) => err.into(),
        }
    }
}

impl From<crate::reconcile::ReconcileError> for IngestError {
    fn from(err: crate::reconcile::ReconcileError) -> Self {
        let crate::reconcile::ReconcileError::State(err) = err;
        err.into()
    }
}
