//! How much memory a pipeline step will take, estimated from headers alone (and, for PDFs, the
//! guard's count), so the service can reserve it before the step runs.

use crate::inspect::{check_type, decode_cost};
use crate::{Limits, MediaType, PdfLimits, PipelineError, pdf_guard};

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

/// What [`estimate`] found: the memory a step may take, and (for a PDF) that the guard's scan of
/// exactly these bytes under these limits passed, so [`crate::inspect_estimated`] need not scan
/// them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Bytes the step may allocate.
    pub bytes: u64,
    /// Address and length of the PDF the guard passed, and the limits it passed under.
    pub(crate) scanned: Option<(usize, usize, PdfLimits)>,
}

impl Estimate {
    /// True if this estimate scanned `bytes` (the same buffer, not a copy) under `limits`.
    pub(crate) fn scanned(&self, bytes: &[u8], limits: &PdfLimits) -> bool {
        self.scanned == Some((bytes.as_ptr() as usize, bytes.len(), *limits))
    }
}

/// Bytes `step` may allocate for the upload `bytes` declared as `media`; refuses files that are
/// not of that type, or over the decode and parse limits, on the way.
pub fn memory_cost(
    bytes: &[u8],
    media: MediaType,
    step: Step,
    limits: &Limits,
) -> Result<u64, PipelineError> {
    estimate(bytes, media, step, limits).map(|estimate| estimate.bytes)
}

/// [`memory_cost`], remembering a PDF's guard scan for [`crate::inspect_estimated`].
pub fn estimate(
    bytes: &[u8],
    media: MediaType,
    step: Step,
    limits: &Limits,
) -> Result<Estimate, PipelineError> {
    check_type(bytes, media)?;
    let file = bytes.len() as u64;
    let mut scanned = None;
    // What checking the upload takes, what decoding it for a conversion takes, and what making
    // its pages takes (a JPEG is embedded as it is, a PNG is decoded whole).
    let (check, convert, pages) = if media == MediaType::Pdf {
        let cost = pdf_guard::scan(bytes, &limits.pdf)?.memory(file);
        scanned = Some((bytes.as_ptr() as usize, bytes.len(), limits.pdf));
        // The check also takes the first page's fingerprint, under an allowance of its own.
        let check = cost.saturating_add(crate::fingerprint::PDF_FINGERPRINT_BYTES);
        (check, cost, cost)
    } else {
        let cost = decode_cost(bytes, media, limits)?;
        let pages = if media == MediaType::Jpeg {
            cost.check_bytes
        } else {
            cost.bytes
        };
        (cost.check_bytes, cost.convert_bytes, pages)
    };
    let bytes = match step {
        Step::Inspect => check,
        Step::Webp => {
            // The decoded image and as much again (its 8-bit copy, or the resize's intermediate
            // rows), and the resized output twice (resize, encode).
            let out = u64::from(limits.max_edge) * u64::from(limits.max_edge) * 4;
            convert.saturating_mul(2).saturating_add(out * 2)
        }
        // A report read whole is parsed and written again (a few times its size); an
        // increment holds the upload's pages once more.
        Step::Report { report_bytes } => pages
            .saturating_add(report_bytes.saturating_mul(4))
            .saturating_add(file * 2),
    };
    Ok(Estimate { bytes, scanned })
}
