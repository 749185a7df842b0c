//! The pipeline step of an upload: the received bytes become the object to store, by the
//! kind's [`Conversion`] (kept as sent after inspection, converted to WebP, or appended to a
//! report, see [`super::report`]), each step on the blocking pool under the memory it reserved.
//! Then the object is placed ([`super::place`]).

use super::Ingestor;
use super::digest::RunningSha256;
use super::forward::Written;
use super::plan::UploadPlan;
use super::policy::Conversion;
use super::receive::Received;
use crate::error::IngestError;
use crate::state::{ImageRecord, ReportState};
use bytes::Bytes;
use imaging_pipeline::{self as pipeline, Inspected, Limits, MediaType};
use sha2::{Digest, Sha256};

/// How an object's bytes are written.
#[derive(Debug, Clone)]
pub(super) enum Body {
    /// The whole object, and its CRC32C if it was computed on arrival.
    Whole(Bytes, Option<u32>),
    /// Already in storage, written as it arrived (see [`super::forward`]): kept once a record
    /// names it, deleted otherwise.
    Written(std::sync::Arc<Written>),
    /// An existing object followed by new bytes (an append to a report), written without
    /// reading the existing object.
    Appended {
        base: String,
        base_len: u64,
        tail: Bytes,
    },
}

/// What the pipeline made of an upload, ready to store.
#[derive(Debug, Clone)]
pub(super) struct Content {
    pub(super) body: Body,
    /// Size of the whole object.
    pub(super) size: u64,
    /// SHA-256 of the whole object, computed once and used for the record (and, for a whole
    /// body, the storage write).
    pub(super) sha256: [u8; 32],
    pub(super) media: MediaType,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) pages: u32,
    /// For a report: what its next append needs.
    pub(super) report: Option<ReportState>,
    /// The uploaded picture's fingerprint, for the duplicate index.
    pub(super) fingerprint: Option<pipeline::Fingerprint>,
}

impl Content {
    pub(super) fn new(
        bytes: Vec<u8>,
        media: MediaType,
        width: u32,
        height: u32,
        pages: u32,
    ) -> Self {
        Content {
            sha256: Sha256::digest(&bytes).into(),
            size: bytes.len() as u64,
            body: Body::Whole(Bytes::from(bytes), None),
            media,
            width,
            height,
            pages,
            report: None,
            fingerprint: None,
        }
    }

    /// The same, with the uploaded picture's fingerprint.
    pub(super) fn with_fingerprint(mut self, fingerprint: Option<pipeline::Fingerprint>) -> Self {
        self.fingerprint = fingerprint;
        self
    }

    /// A whole report file and its layout.
    pub(super) fn report(bytes: Vec<u8>, update: &ReportUpdateInfo) -> Self {
        let mut digest = RunningSha256::new();
        digest.update(&bytes);
        Content {
            sha256: digest.digest(),
            size: bytes.len() as u64,
            body: Body::Whole(Bytes::from(bytes), None),
            media: MediaType::Pdf,
            width: 0,
            height: 0,
            pages: update.page_count,
            report: Some(ReportState {
                layout: update.layout.clone(),
                digest: digest.encode(),
            }),
            fingerprint: None,
        }
    }
}

/// The parts of a [`pipeline::ReportUpdate`] a [`Content`] keeps.
pub(super) struct ReportUpdateInfo {
    pub(super) layout: pipeline::ReportLayout,
    pub(super) page_count: u32,
}

impl From<&pipeline::ReportUpdate> for ReportUpdateInfo {
    fn from(update: &pipeline::ReportUpdate) -> Self {
        ReportUpdateInfo {
            layout: update.layout.clone(),
            page_count: update.page_count,
        }
    }
}

/// True if an inspected JPEG or PNG has a side over the plan's largest (and is reduced).
fn over_side(plan: &UploadPlan, seen: &Inspected) -> bool {
    plan.max_side > 0
        && matches!(seen.media, MediaType::Jpeg | MediaType::Png)
        && seen.width.max(seen.height) > plan.max_side
}

/// Files up to this size are estimated on the async runtime: reading their headers (or scanning
/// a PDF this small) takes microseconds, less than handing the work to the blocking pool.
const INLINE_ESTIMATE_BYTES: usize = 64 * 1024;

/// Reserves, in the memory budget, what `step` will need for `bytes` (estimated from headers
/// and the PDF guard, off the async runtime unless the file is small), refusing files over the
/// decode and parse limits.
pub(super) async fn reserve_for(
    ingestor: &Ingestor,
    bytes: &Bytes,
    media: MediaType,
    step: pipeline::Step,
    limits: Limits,
) -> Result<(super::budget::Reserved, pipeline::Estimate), IngestError> {
    let estimate = if bytes.len() <= INLINE_ESTIMATE_BYTES {
        pipeline::estimate(bytes, media, step, &limits)?
    } else {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || pipeline::estimate(&bytes, media, step, &limits))
            .await
            .map_err(|err| IngestError::Internal(format!("cost estimate failed: {err}")))??
    };
    Ok((ingestor.budget.reserve(estimate.bytes).await?, estimate))
}

/// Runs CPU-bound pipeline work on the blocking pool, in a `pipeline.{step}` span, timed, held
/// to the memory `reserved` for it while it runs (see `imaging_pipeline::meter`): work that
/// allocates more is stopped and refused as too complex.
pub(super) async fn blocking<T: Send + 'static>(
    ingestor: &Ingestor,
    step: &'static str,
    reserved: &super::budget::Reserved,
    work: impl FnOnce() -> Result<T, pipeline::PipelineError> + Send + 'static,
) -> Result<T, IngestError> {
    let span = tracing::info_span!("pipeline", step);
    let started = std::time::Instant::now();
    let limit = reserved.bytes();
    let result = tokio::task::spawn_blocking(move || {
        span.in_scope(|| pipeline::meter::run(limit, work).map(|(value, _)| value))
    })
    .await;
    ingestor.metrics.conversion_duration.record(
        started.elapsed().as_secs_f64(),
        &[opentelemetry::KeyValue::new("step", step)],
    );
    result
        .map_err(|err| IngestError::Internal(format!("pipeline task failed: {err}")))?
        .map_err(IngestError::from)
}

impl Ingestor {
    /// Validates, converts and places a complete upload.
    pub(crate) async fn store(
        &self,
        plan: &UploadPlan,
        mut received: Received,
    ) -> Result<ImageRecord, IngestError> {
        let limits = self.limits.pipeline;
        let media = plan.media;
        match plan.policy.conversion {
            Conversion::Keep => {
                // A forwarded upload's write ends while it is checked.
                let forwarded = received.forwarded.take();
                let written = async {
                    match forwarded {
                        Some(forward) => forward.written().await,
                        None => None,
                    }
                };
                let early = received.early.take();
                let inspected = async {
                    // The check run as the bytes arrived, if it ran to an outcome; else now.
                    let early = match early {
                        Some(early) => early.inspected(self, &received.bytes).await,
                        None => None,
                    };
                    match early {
                        Some(inspected) => inspected,
                        None => self.inspect(&received.bytes, media).await,
                    }
                };
                let (seen, written) = tokio::join!(inspected, written);
                let written = written.map(std::sync::Arc::new);
                let seen = match seen {
                    Ok(seen) => seen,
                    Err(err) => {
                        if let Some(written) = written {
                            written.discard().await;
                        }
                        return Err(err);
                    }
                };
                let placed = self.keep(plan, received, seen, written.clone()).await;
                if placed.is_err()
                    && let Some(written) = written
                {
                    written.discard().await;
                }
                placed
            }
            Conversion::Webp => {
                let (work, _) =
                    reserve_for(self, &received.bytes, media, pipeline::Step::Webp, limits).await?;
                let bytes = received.bytes;
                let (webp, fingerprint) = blocking(self, "webp", &work, move || {
                    let webp = pipeline::to_webp(&bytes, media, &limits)?;
                    let fingerprint = pipeline::fingerprint(&bytes, media, &limits).ok().flatten();
                    Ok((webp, fingerprint))
                })
                .await?;
                let content = Content::new(webp.bytes, MediaType::Webp, webp.width, webp.height, 1)
                    .with_fingerprint(fingerprint);
                self.place(plan, content).await
            }
            Conversion::ReportPdf => self.append_report(plan, received.bytes, limits).await,
        }
    }

    /// Inspects an upload kept as sent (under the memory its estimate reserved).
    async fn inspect(&self, bytes: &Bytes, media: MediaType) -> Result<Inspected, IngestError> {
        let limits = self.limits.pipeline;
        let (work, estimate) =
            reserve_for(self, bytes, media, pipeline::Step::Inspect, limits).await?;
        // The same buffer the estimate scanned: a PDF is not scanned twice.
        let bytes = bytes.clone();
        blocking(self, "inspect", &work, move || {
            pipeline::inspect_estimated(&bytes, media, &limits, &estimate)
        })
        .await
    }

    /// Places an inspected upload kept as sent: as it came (the object `written` as it arrived,
    /// if it was), or in the form every viewer opens (a HEIC, TIFF or GIF), reduced if it is
    /// over the plan's largest side (then `written` is not the object, and is deleted).
    async fn keep(
        &self,
        plan: &UploadPlan,
        received: Received,
        mut seen: Inspected,
        written: Option<std::sync::Arc<Written>>,
    ) -> Result<ImageRecord, IngestError> {
        let media = plan.media;
        let too_large = over_side(plan, &seen);
        if let Some(written) = &written
            && (too_large || seen.converted.is_some())
        {
            written.discard().await;
        }
        // A HEIC, TIFF or GIF is stored in the form every viewer opens.
        let fingerprint = seen.fingerprint.take();
        if let Some(converted) = seen.converted.take() {
            if too_large {
                return self
                    .reduce_and_place(plan, Bytes::from(converted), seen.media, fingerprint)
                    .await;
            }
            let content = Content::new(
                converted,
                seen.media,
                seen.width,
                seen.height,
                seen.page_count,
            )
            .with_fingerprint(fingerprint);
            return self.place(plan, content).await;
        }
        if too_large {
            return self
                .reduce_and_place(plan, received.bytes, seen.media, fingerprint)
                .await;
        }
        let body = match written {
            Some(written) => {
                // Already stored: the buffer goes back before the commit's round trips.
                drop(received.bytes);
                Body::Written(written)
            }
            None => Body::Whole(received.bytes, received.crc32c),
        };
        let content = Content {
            size: received.size,
            body,
            sha256: received.sha256,
            media,
            width: seen.width,
            height: seen.height,
            pages: seen.page_count,
            report: None,
            fingerprint,
        };
        self.place(plan, content).await
    }
}

impl Ingestor {
    /// Reduces a JPEG or PNG with a side over the plan's `max_side`, under the memory it
    /// reserved, and places it.
    async fn reduce_and_place(
        &self,
        plan: &UploadPlan,
        bytes: Bytes,
        media: MediaType,
        fingerprint: Option<pipeline::Fingerprint>,
    ) -> Result<ImageRecord, IngestError> {
        let limits = pipeline::reduction_limits(&self.limits.pipeline, plan.max_side);
        let (work, _) = reserve_for(self, &bytes, media, pipeline::Step::Webp, limits).await?;
        let max_side = plan.max_side;
        let source = bytes.clone();
        let reduced = blocking(self, "reduce", &work, move || {
            pipeline::reduce(&source, media, max_side, &limits)
        })
        .await?;
        drop(work);
        let reduced = reduced.ok_or_else(|| {
            IngestError::Internal("an image over the largest side was not reduced".to_owned())
        })?;
        let content = Content::new(
            reduced.bytes,
            reduced.media,
            reduced.width,
            reduced.height,
            1,
        )
        .with_fingerprint(fingerprint);
        self.place(plan, content).await
    }
}
