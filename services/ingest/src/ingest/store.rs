//! The last steps of an upload: the pipeline turns the received bytes into the object to store
//! (by the kind's [`Conversion`]), then the object is placed (by its [`Placement`]): quota
//! reserved for the growth, object written, record committed, previous object dropped. Any
//! failure before the record is written undoes the reservation and the object.

use super::Ingestor;
use super::guard::IngestGuard;
use super::lock::with_lock;
use super::plan::UploadPlan;
use super::policy::{Conversion, Placement};
use super::receive::Received;
use super::target::object_key;
use crate::error::IngestError;
use crate::state::{ImageRecord, Reservation};
use bytes::Bytes;
use imaging_pipeline::{self as pipeline, Inspected, Limits, MediaType};
use sha2::{Digest, Sha256};

/// What the pipeline made of an upload, ready to store.
#[derive(Debug)]
struct Content {
    bytes: Bytes,
    /// SHA-256 of `bytes`, computed once and used for the record and the storage write.
    sha256: [u8; 32],
    media: MediaType,
    width: u32,
    height: u32,
    pages: u32,
}

impl Content {
    fn new(bytes: Vec<u8>, media: MediaType, width: u32, height: u32, pages: u32) -> Self {
        Content {
            sha256: Sha256::digest(&bytes).into(),
            bytes: Bytes::from(bytes),
            media,
            width,
            height,
            pages,
        }
    }
}

/// Reserves, in the memory budget, what `step` will need for `bytes` (estimated off the async
/// runtime from headers and the PDF guard), refusing files over the decode and parse limits.
async fn reserve_for(
    ingestor: &Ingestor,
    bytes: &Bytes,
    media: MediaType,
    step: pipeline::Step,
    limits: Limits,
) -> Result<super::budget::Reserved, IngestError> {
    let bytes = bytes.clone();
    let cost =
        tokio::task::spawn_blocking(move || pipeline::memory_cost(&bytes, media, step, &limits))
            .await
            .map_err(|err| IngestError::Internal(format!("cost estimate failed: {err}")))??;
    ingestor.budget.reserve(cost).await
}

/// Runs CPU-bound pipeline work on the blocking pool, in a `pipeline.{step}` span, timed.
async fn blocking<T: Send + 'static>(
    ingestor: &Ingestor,
    step: &'static str,
    work: impl FnOnce() -> Result<T, pipeline::PipelineError> + Send + 'static,
) -> Result<T, IngestError> {
    let span = tracing::info_span!("pipeline", step);
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || span.in_scope(work)).await;
    ingestor.metrics.conversion_duration.record(
        started.elapsed().as_secs_f64(),
        &[opentelemetry::KeyValue::new("step", step)],
    );
    result
        .map_err(|err| IngestError::Internal(format!("pipeline task failed: {err}")))?
        .map_err(IngestError::from)
}

impl Ingestor {
    fn pipeline_limits(&self) -> Limits {
        let limits = &self.limits;
        Limits {
            max_pixels: limits.max_pixels,
            max_image_bytes: limits.max_image_bytes,
            max_ancillary_bytes: limits.max_ancillary_bytes,
            pdf: pipeline::PdfLimits {
                max_tokens: limits.pdf_max_tokens,
                max_objects: limits.pdf_max_objects,
                max_depth: limits.pdf_max_depth,
                max_stream_inflated_bytes: limits.pdf_max_stream_inflated_bytes,
                max_inflated_bytes: limits.pdf_max_inflated_bytes,
                max_pages: limits.pdf_max_pages,
            },
            max_edge: limits.webp_max_edge,
            webp_quality: limits.webp_quality,
        }
    }

    /// Validates, converts and places a complete upload.
    pub(crate) async fn store(
        &self,
        plan: &UploadPlan,
        received: Received,
    ) -> Result<ImageRecord, IngestError> {
        let limits = self.pipeline_limits();
        let media = plan.media;
        match plan.policy.conversion {
            Conversion::Keep => {
                let _work = reserve_for(
                    self,
                    &received.bytes,
                    media,
                    pipeline::Step::Inspect,
                    limits,
                )
                .await?;
                let bytes = received.bytes.clone();
                let seen: Inspected = blocking(self, "inspect", move || {
                    pipeline::inspect(&bytes, media, &limits)
                })
                .await?;
                let content = Content {
                    bytes: received.bytes,
                    sha256: received.sha256,
                    media,
                    width: seen.width,
                    height: seen.height,
                    pages: seen.page_count,
                };
                self.place(plan, content).await
            }
            Conversion::Webp => {
                let _work =
                    reserve_for(self, &received.bytes, media, pipeline::Step::Webp, limits).await?;
                let bytes = received.bytes;
                let webp = blocking(self, "webp", move || {
                    pipeline::to_webp(&bytes, media, &limits)
                })
                .await?;
                let content = Content::new(webp.bytes, MediaType::Webp, webp.width, webp.height, 1);
                self.place(plan, content).await
            }
            Conversion::ReportPdf => self.append_report(plan, received.bytes, limits).await,
        }
    }

    /// Places `content` as the plan's placement says, under the target's lock where the
    /// target's current image matters.
    async fn place(&self, plan: &UploadPlan, content: Content) -> Result<ImageRecord, IngestError> {
        let catalog_key = plan.target.catalog_key();
        match plan.policy.placement {
            Placement::Create => self.commit(plan, content, None).await,
            Placement::AttachOnce => {
                with_lock(&self.catalog, lock_name(plan), self.lock_wait, async {
                    match self.catalog.image(&catalog_key).await? {
                        Some(_) => Err(IngestError::AlreadyAttached),
                        None => self.commit(plan, content, None).await,
                    }
                })
                .await
            }
            Placement::Replace | Placement::Append => {
                with_lock(&self.catalog, lock_name(plan), self.lock_wait, async {
                    let previous = self.catalog.image(&catalog_key).await?;
                    self.commit(plan, content, previous).await
                })
                .await
            }
        }
    }

    /// Appends the upload's pages to the report PDF, under the report's lock. Building the pages
    /// parses PDFs and decodes PNGs, which validates them; a JPEG is embedded as it is, so it is
    /// fully decoded first, outside the lock.
    async fn append_report(
        &self,
        plan: &UploadPlan,
        bytes: Bytes,
        limits: Limits,
    ) -> Result<ImageRecord, IngestError> {
        let media = plan.media;
        if media == MediaType::Jpeg {
            let _work = reserve_for(self, &bytes, media, pipeline::Step::Inspect, limits).await?;
            let checked = bytes.clone();
            blocking(self, "inspect", move || {
                pipeline::inspect(&checked, media, &limits)
            })
            .await?;
        }
        with_lock(&self.catalog, lock_name(plan), self.lock_wait, async {
            let previous = self.catalog.image(&plan.target.catalog_key()).await?;
            let report_bytes = previous.as_ref().map_or(0, |record| record.size);
            let step = pipeline::Step::Report { report_bytes };
            let _work = reserve_for(self, &bytes, media, step, limits).await?;
            let report = match &previous {
                None => {
                    blocking(self, "report", move || {
                        pipeline::start_report(&bytes, media, &limits)
                    })
                    .await?
                }
                Some(current) => {
                    let existing = self.store.get(&current.key).await?.ok_or_else(|| {
                        IngestError::Internal(format!("report object {} is missing", current.key))
                    })?;
                    blocking(self, "report", move || {
                        pipeline::append_to_report(&existing, &bytes, media, &limits)
                    })
                    .await?
                }
            };
            let content = Content::new(report.bytes, MediaType::Pdf, 0, 0, report.page_count);
            self.commit(plan, content, previous).await
        })
        .await
    }

    /// Reserves quota for the growth, writes the object, records it, then drops the previous
    /// object (if any) and releases what it no longer uses. Any failure before the record is
    /// written undoes the reservation and the object.
    async fn commit(
        &self,
        plan: &UploadPlan,
        content: Content,
        previous: Option<ImageRecord>,
    ) -> Result<ImageRecord, IngestError> {
        let size = content.bytes.len() as u64;
        let old = previous.as_ref().map_or(0, |p| p.size);
        let grow = size.saturating_sub(old);
        if grow > 0
            && let Reservation::Exceeded { limit, used } = self
                .quota
                .reserve(&plan.workspace, grow, self.limits.default_quota_bytes)
                .await?
        {
            return Err(IngestError::QuotaExceeded {
                workspace: plan.workspace.clone(),
                limit,
                used,
                requested: grow,
            });
        }
        let mut guard = IngestGuard::new(
            self.quota.clone(),
            self.store.clone(),
            &plan.workspace,
            grow,
        );
        let key = object_key(
            &plan.workspace,
            plan.target.kind,
            &plan.target.id,
            content.media,
        );
        let record = ImageRecord {
            image_id: plan.target.id.clone(),
            key: key.clone(),
            workspace: plan.workspace.clone(),
            owner: plan.owner.clone(),
            content_type: content.media.mime().to_owned(),
            size,
            width: content.width,
            height: content.height,
            page_count: content.pages,
            sha256: hex::encode(content.sha256),
        };
        if let Err(err) = self
            .store
            .put(&key, content.bytes, &content.sha256, content.media.mime())
            .await
        {
            guard.rollback().await;
            return Err(err.into());
        }
        guard.wrote(&key);
        if let Err(err) = self
            .catalog
            .put_image(&plan.target.catalog_key(), &record)
            .await
        {
            guard.rollback().await;
            return Err(err.into());
        }
        guard.disarm();
        self.metrics.bytes_stored.add(
            size,
            &[opentelemetry::KeyValue::new(
                "kind",
                plan.target.kind.name(),
            )],
        );
        if let Some(previous) = previous {
            if let Err(err) = self.store.delete(&previous.key).await {
                tracing::error!(key = %previous.key, error = %err, "replaced object not deleted; reconcile will count it");
            }
            if old > size
                && let Err(err) = self.quota.release(&plan.workspace, old - size).await
            {
                tracing::error!(error = %err, "quota not released after replace; reconcile will fix it");
            }
        }
        Ok(record)
    }
}

/// The lock serialising writes to the plan's target.
pub(crate) fn lock_name(plan: &UploadPlan) -> String {
    format!("target:{}", plan.target.catalog_key())
}
