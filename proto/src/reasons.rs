//! The one table of what each [`ErrorReason`] is on the wire: its gRPC code (what the ingest
//! service answers) and its HTTP status (what the REST gateway answers). The service, the
//! gateway and their tests read it from here; the `match` names every reason, so a new reason
//! does not compile until it has both.

use crate::v1::ErrorReason;
use tonic::Code;

/// A reason's gRPC code and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// The gRPC status code.
    pub grpc: Code,
    /// The HTTP status every REST dialect answers with, unless the dialect's own documentation
    /// says otherwise (Concur answers an unsupported type with 415).
    pub http: u16,
}

const fn wire(grpc: Code, http: u16) -> Wire {
    Wire { grpc, http }
}

/// What `reason` is on the wire.
///
/// `IDEMPOTENCY_KEY_REUSED` is 422, as the IETF `Idempotency-Key` draft prescribes for a key
/// reused with another payload; a full quota is 507 (Insufficient Storage).
pub const fn of(reason: ErrorReason) -> Wire {
    use ErrorReason::*;
    match reason {
        InvalidId | InvalidRequest | MissingFile | ChunkTooLarge => {
            wire(Code::InvalidArgument, 400)
        }
        TokenMissing | TokenInvalid | TokenExpired => wire(Code::Unauthenticated, 401),
        PermissionDenied => wire(Code::PermissionDenied, 403),
        TargetNotFound | ImageNotFound | RouteNotFound | UploadNotFound => {
            wire(Code::NotFound, 404)
        }
        AlreadyAttached | DuplicateImage => wire(Code::AlreadyExists, 409),
        TargetConflict | OffsetMismatch => wire(Code::FailedPrecondition, 409),
        FileTooLarge | ReportTooLarge => wire(Code::OutOfRange, 413),
        UnsupportedMediaType | ContentTypeMismatch | CorruptImage | EncryptedPdf | SizeMismatch
        | ChecksumMismatch => wire(Code::InvalidArgument, 422),
        IdempotencyKeyReused => wire(Code::FailedPrecondition, 422),
        QuotaExceeded => wire(Code::ResourceExhausted, 507),
        TooManyUploads | TooManyOpenUploads => wire(Code::ResourceExhausted, 429),
        UploadTimeout => wire(Code::DeadlineExceeded, 408),
        Busy | Overloaded | ShuttingDown | StorageUnavailable | QuotaUnavailable => {
            wire(Code::Unavailable, 503)
        }
        Internal | Unspecified => wire(Code::Internal, 500),
    }
}

/// Every reason of the contract (`Unspecified` excluded), in the order the contract numbers them.
pub fn all() -> Vec<ErrorReason> {
    (1..)
        .map_while(|value| ErrorReason::try_from(value).ok())
        .collect()
}
