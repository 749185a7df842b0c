//! Why the pipeline refused a file.

use crate::MediaType;

/// A file the pipeline refuses. Messages are short and for logs.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The operation does not take this type (e.g. a PDF given to the WebP conversion).
    #[error("unsupported media type for this operation")]
    UnsupportedMediaType,
    /// The file is of an accepted type but uses a feature that is not read (BigTIFF with
    /// palettes, a HEIF coded with something other than HEVC, ...); names it.
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    /// The bytes are not of the declared type.
    #[error("declared {declared:?} but the content is {detected:?}")]
    ContentTypeMismatch {
        /// What the client said.
        declared: MediaType,
        /// What the bytes are, if recognised.
        detected: Option<MediaType>,
    },
    /// The file does not decode or parse.
    #[error("corrupt file: {0}")]
    Corrupt(String),
    /// The header claims more pixels than allowed (decompression-bomb guard).
    #[error("{width}x{height} pixels is over the pixel limit")]
    TooManyPixels {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
    },
    /// Parsing or decoding would cost more than the limits allow (a decompression bomb, a file
    /// built to exhaust memory); `what` names the limit.
    #[error("over the limit of {what}")]
    TooComplex {
        /// The limit, e.g. "PDF tokens" or "decoded image".
        what: &'static str,
    },
    /// The PDF is encrypted or password protected.
    #[error("encrypted PDF")]
    EncryptedPdf,
}
