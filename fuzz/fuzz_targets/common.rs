//! What every target shares: the counting allocator, and the oracle that the memory the service
//! reserves for a step is enough for every file the step accepts (a file the meter stops that the
//! step would have accepted is a valid upload refused: a finding).

use imaging_pipeline::{Limits, MediaType, PipelineError, Step, estimate, meter};

#[global_allocator]
static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;

/// Runs `work` on `data` (sniffed) under the memory `step` reserves for it, as the service
/// does. Refusals are fine, unless the meter refused a file the step accepts unmetered.
pub fn metered<T>(
    data: &[u8],
    step: Step,
    work: impl Fn(&[u8], MediaType, &Limits) -> Result<T, PipelineError>,
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
        && let Ok((_, peak)) = meter::run(u64::MAX, || work(data, media, &limits))
    {
        panic!(
            "a {media:?} file the step accepts held {} bytes, more than the {} reserved for it",
            peak.0, reserved.bytes
        );
    }
}
