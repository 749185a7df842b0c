//! What every target shares: the counting allocator, and the oracle that a step never holds
//! more memory than the estimate the service reserves for it.

use imaging_pipeline::{Limits, MediaType, PipelineError, Step, estimate, meter};

#[global_allocator]
static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;

/// Runs `work` on `data` (sniffed) under the memory `step` reserves for it, as the service
/// does. Refusals are fine; a step that outgrew its estimate is a finding.
pub fn metered<T>(
    data: &[u8],
    step: Step,
    work: impl FnOnce(&[u8], MediaType, &Limits) -> Result<T, PipelineError>,
) {
    let limits = Limits::default();
    let Some(media) = imaging_pipeline::sniff(data) else {
        return;
    };
    let Ok(reserved) = estimate(data, media, step, &limits) else {
        return;
    };
    if let Err(PipelineError::TooComplex { what: "memory" }) =
        meter::run(reserved.bytes, || work(data, media, &limits))
    {
        panic!(
            "a {media:?} step held more than the {} bytes reserved for it",
            reserved.bytes
        );
    }
}
