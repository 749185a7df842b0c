//! How much memory a pipeline step will take, estimated from headers alone (and, for PDFs, the
//! guard's count), so the service can reserve it before the step runs.

use crate::inspect::{check_type, decode_cost};
use crate::{Limits, MediaType, PipelineError, pdf_guard};

/// A pipeline step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Validation of an upload stored as it is.
    Inspect,
    /// Conversion to WebP.
    Webp,
    /// The upload's pages added to a report. `report_bytes` is the size of an existing report
    /// that must be read whole (one written by an earlier version, or a receipt becoming a
    /// report); 0 for a new report and for every incremental append, which reads none of it.
    Report {
        /// Bytes of the existing report that are read and parsed.
        report_bytes: u64,
    },
}

/// Bytes `step` may allocate for the upload `bytes` declared as `media`; refuses files that are
/// not of that type, or over the decode and parse limits, on the way.
pub fn memory_cost(
    bytes: &[u8],
    media: MediaType,
    step: Step,
    limits: &Limits,
) -> Result<u64, PipelineError> {
    check_type(bytes, media)?;
    let file = bytes.len() as u64;
    let upload = if media == MediaType::Pdf {
        pdf_guard::scan(bytes, &limits.pdf)?.memory(file)
    } else {
        decode_cost(bytes, media, limits)?.bytes
    };
    Ok(match step {
        Step::Inspect => upload,
        Step::Webp => {
            // The decoded image, its 8-bit copy, and the resized output (twice: resize, encode).
            let out = u64::from(limits.max_edge) * u64::from(limits.max_edge) * 4;
            upload.saturating_mul(2).saturating_add(out * 2)
        }
        // A report read whole is parsed and written again (a few times its size); an
        // increment holds the upload's pages once more.
        Step::Report { report_bytes } => upload
            .saturating_add(report_bytes.saturating_mul(4))
            .saturating_add(file * 2),
    })
}
