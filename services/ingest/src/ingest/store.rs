//! The last steps of an upload: the pipeline turns the received bytes into the object to store
//! (by the kind's [`Conversion`]), then the object is placed (by its [`Placement`]): quota
//! reserved for the growth, object written, record committed, previous object dropped. Any
//! failure before the record is written undoes the reservation and the object.

use super::digest::RunningSha256;
use super::guard::IngestGuard;
use super::lock::with_lock;
use super::plan::UploadPlan;
use super::policy::{Conversion, Placement};
use super::receive::Received;
use super::target::Kind;
use super::target::object_key;
use super::{Ingestor, MAX_ATTEMPTS};
use crate::error::IngestError;
use crate::state::{
    ImageRecord, Listing, ReportState, Reservation, Swap, Swapped, listing_entry, now_millis,
};
use crate::storage::{BodyDigest, StorageError};
use bytes::Bytes;
use imaging_pipeline::{self as pipeline, Inspected, Limits, MediaType};
use sha2::{Digest, Sha256};

/// How an object's bytes are written.
#[derive(Debug, Clone)]
enum Body {
    /// The whole object, and its CRC32C if it was computed on arrival.
    Whole(Bytes, Option<u32>),
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
struct Content {
    body: Body,
    /// Size of the whole object.
    size: u64,
    /// SHA-256 of the whole object, computed once and used for the record (and, for a whole
    /// body, the storage write).
    sha256: [u8; 32],
    media: MediaType,
    width: u32,
    height: u32,
    pages: u32,
    /// For a report: what its next append needs.
    report: Option<ReportState>,
}

impl Content {
    fn new(bytes: Vec<u8>, media: MediaType, width: u32, height: u32, pages: u32) -> Self {
        Content {
            sha256: Sha256::digest(&bytes).into(),
            size: bytes.len() as u64,
            body: Body::Whole(Bytes::from(bytes), None),
            media,
            width,
            height,
            pages,
            report: None,
        }
    }

    /// A whole report file and its layout.
    fn report(bytes: Vec<u8>, update: &ReportUpdateInfo) -> Self {
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
        }
    }
}

/// The parts of a [`pipeline::ReportUpdate`] a [`Content`] keeps.
struct ReportUpdateInfo {
    layout: pipeline::ReportLayout,
    page_count: u32,
}

impl From<&pipeline::ReportUpdate> for ReportUpdateInfo {
    fn from(update: &pipeline::ReportUpdate) -> Self {
        ReportUpdateInfo {
            layout: update.layout.clone(),
            page_count: update.page_count,
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
) -> Result<(super::budget::Reserved, pipeline::Estimate), IngestError> {
    let bytes = bytes.clone();
    let estimate =
        tokio::task::spawn_blocking(move || pipeline::estimate(&bytes, media, step, &limits))
            .await
            .map_err(|err| IngestError::Internal(format!("cost estimate failed: {err}")))??;
    Ok((ingestor.budget.reserve(estimate.bytes).await?, estimate))
}

/// Runs CPU-bound pipeline work on the blocking pool, in a `pipeline.{step}` span, timed, held
/// to the memory `reserved` for it while it runs (see `imaging_pipeline::meter`): work that
/// allocates more is stopped and refused as too complex.
async fn blocking<T: Send + 'static>(
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
                let (work, estimate) = reserve_for(
                    self,
                    &received.bytes,
                    media,
                    pipeline::Step::Inspect,
                    limits,
                )
                .await?;
                // The same buffer the estimate scanned: a PDF is not scanned twice.
                let bytes = received.bytes.clone();
                let seen: Inspected = blocking(self, "inspect", &work, move || {
                    pipeline::inspect_estimated(&bytes, media, &limits, &estimate)
                })
                .await?;
                let content = Content {
                    size: received.bytes.len() as u64,
                    body: Body::Whole(received.bytes, received.crc32c),
                    sha256: received.sha256,
                    media,
                    width: seen.width,
                    height: seen.height,
                    pages: seen.page_count,
                    report: None,
                };
                self.place(plan, content).await
            }
            Conversion::Webp => {
                let (work, _) =
                    reserve_for(self, &received.bytes, media, pipeline::Step::Webp, limits).await?;
                let bytes = received.bytes;
                let webp = blocking(self, "webp", &work, move || {
                    pipeline::to_webp(&bytes, media, &limits)
                })
                .await?;
                let content = Content::new(webp.bytes, MediaType::Webp, webp.width, webp.height, 1);
                self.place(plan, content).await
            }
            Conversion::ReportPdf => self.append_report(plan, received.bytes, limits).await,
        }
    }

    /// Places `content` as the plan's placement says. Where the target's current image
    /// matters, the commit is a compare-and-set against the record read; the target's lock only
    /// keeps writers from wasting work, and a writer that loses starts over (replace) or is
    /// refused (attach once).
    async fn place(&self, plan: &UploadPlan, content: Content) -> Result<ImageRecord, IngestError> {
        let catalog_key = plan.target.catalog_key();
        match plan.policy.placement {
            // A new receipt's key is new: nobody else can have written it.
            Placement::Create => self
                .commit(plan, content, None)
                .await?
                .ok_or(IngestError::AlreadyAttached),
            Placement::AttachOnce => {
                with_lock(&self.catalog, lock_name(plan), self.locks, async {
                    if self
                        .catalog
                        .image(&plan.workspace, &catalog_key)
                        .await?
                        .is_some()
                    {
                        return Err(IngestError::AlreadyAttached);
                    }
                    self.commit(plan, content, None)
                        .await?
                        .ok_or(IngestError::AlreadyAttached)
                })
                .await
            }
            Placement::Replace | Placement::Append => {
                with_lock(&self.catalog, lock_name(plan), self.locks, async {
                    for _ in 0..MAX_ATTEMPTS {
                        let previous = self.catalog.image(&plan.workspace, &catalog_key).await?;
                        if let Some(record) = self.commit(plan, content.clone(), previous).await? {
                            return Ok(record);
                        }
                    }
                    Err(IngestError::Busy)
                })
                .await
            }
        }
    }

    /// Appends the upload's pages to the report PDF. Building the pages parses PDFs and decodes
    /// PNGs, which validates them; a JPEG is embedded as it is, so it is checked first (every
    /// coefficient entropy-decoded, see `pipeline::inspect`).
    /// The append is an incremental update built from the record alone (its layout and running
    /// hash): nothing of the report is read, and storage makes the new object from the old one
    /// and the increment. It is committed against the record read; if another append got there
    /// first, it is built again on the new report.
    async fn append_report(
        &self,
        plan: &UploadPlan,
        bytes: Bytes,
        limits: Limits,
    ) -> Result<ImageRecord, IngestError> {
        let media = plan.media;
        if media == MediaType::Jpeg {
            let (work, _) =
                reserve_for(self, &bytes, media, pipeline::Step::Inspect, limits).await?;
            let checked = bytes.clone();
            blocking(self, "inspect", &work, move || {
                pipeline::inspect(&checked, media, &limits)
            })
            .await?;
        }
        with_lock(&self.catalog, lock_name(plan), self.locks, async {
            for _ in 0..MAX_ATTEMPTS {
                let previous = self
                    .catalog
                    .image(&plan.workspace, &plan.target.catalog_key())
                    .await?;
                let state = previous.as_ref().and_then(|record| {
                    let state = record.report.as_ref()?;
                    Some((state.layout.clone(), RunningSha256::decode(&state.digest)?))
                });
                // Only a report without a layout (written whole by an earlier version) is read,
                // once, to take it over.
                let read = match (&previous, &state) {
                    (Some(record), None) => record.size,
                    _ => 0,
                };
                let step = pipeline::Step::Report { report_bytes: read };
                let (work, _) = reserve_for(self, &bytes, media, step, limits).await?;
                let upload = bytes.clone();
                let content = match (&previous, state) {
                    (None, _) => {
                        let update = blocking(self, "report", &work, move || {
                            pipeline::start_report(&upload, media, &limits)
                        })
                        .await?;
                        let info = ReportUpdateInfo::from(&update);
                        Content::report(update.bytes, &info)
                    }
                    (Some(record), Some((layout, mut digest))) => {
                        let (size, pages) = (record.size, record.page_count);
                        let update = blocking(self, "report", &work, move || {
                            pipeline::append_to_report(
                                &layout, size, pages, &upload, media, &limits,
                            )
                        })
                        .await?;
                        digest.update(&update.bytes);
                        let tail = Bytes::from(update.bytes);
                        Content {
                            size: size + tail.len() as u64,
                            sha256: digest.digest(),
                            body: Body::Appended {
                                base: record.key.clone(),
                                base_len: size,
                                tail,
                            },
                            media: MediaType::Pdf,
                            width: 0,
                            height: 0,
                            pages: update.page_count,
                            report: Some(ReportState {
                                layout: update.layout,
                                digest: digest.encode(),
                            }),
                        }
                    }
                    (Some(record), None) => {
                        let Some(existing) = self.store.get(&record.key).await? else {
                            // Replaced (and deleted) since it was read: read the new one.
                            continue;
                        };
                        // A report written whole by an earlier version, or a receipt that is
                        // one image or PDF: read once, made the first version of a report.
                        let current = MediaType::from_declared(&record.content_type)
                            .unwrap_or(MediaType::Pdf);
                        let (whole, info) = blocking(self, "report", &work, move || {
                            let adopted = if current == MediaType::Pdf {
                                pipeline::adopt_report(&existing, &limits)?
                            } else {
                                pipeline::start_report(&existing, current, &limits)?
                            };
                            let appended = pipeline::append_to_report(
                                &adopted.layout,
                                adopted.bytes.len() as u64,
                                adopted.page_count,
                                &upload,
                                media,
                                &limits,
                            )?;
                            let mut whole = adopted.bytes;
                            whole.extend_from_slice(&appended.bytes);
                            Ok((whole, ReportUpdateInfo::from(&appended)))
                        })
                        .await?;
                        Content::report(whole, &info)
                    }
                };
                self.check_report_bounds(&content)?;
                match self.commit(plan, content, previous).await {
                    Ok(Some(record)) => return Ok(record),
                    // Another append committed first (or removed the report it built on).
                    Ok(None) | Err(IngestError::Storage(StorageError::BaseChanged(_))) => {}
                    Err(err) => return Err(err),
                }
            }
            Err(IngestError::Busy)
        })
        .await
    }

    /// Refuses a report past its configured size or page bound.
    fn check_report_bounds(&self, content: &Content) -> Result<(), IngestError> {
        if content.size > self.limits.max_report_bytes {
            return Err(IngestError::ReportTooLarge {
                what: "bytes",
                limit: self.limits.max_report_bytes,
            });
        }
        if content.pages > self.limits.max_report_pages {
            return Err(IngestError::ReportTooLarge {
                what: "pages",
                limit: u64::from(self.limits.max_report_pages),
            });
        }
        Ok(())
    }

    /// Reserves quota for the growth, writes the object under a new key, then commits the
    /// record by compare-and-set against `previous` (what the caller read), giving back in the
    /// same step what the previous object used beyond the new one; then deletes the previous
    /// object. `None` if another writer changed the record first: this writer's object and
    /// reservation are undone and nothing else changed. Any failure undoes them too.
    async fn commit(
        &self,
        plan: &UploadPlan,
        content: Content,
        previous: Option<ImageRecord>,
    ) -> Result<Option<ImageRecord>, IngestError> {
        // A registered target removed (or registered again for someone else) while this upload
        // ran takes no image: removal took the target's lock, so this read sees it.
        if plan.target.kind != Kind::Receipt {
            let current = self.catalog.target(&plan.target.catalog_key()).await?;
            if current.is_none_or(|t| t.workspace != plan.workspace || t.owner != plan.owner) {
                return Err(IngestError::TargetNotFound("target"));
            }
        }
        let size = content.size;
        let old = previous.as_ref().map_or(0, |p| p.size);
        let grow = size.saturating_sub(old);
        let reservation = if grow > 0 {
            Some(self.reserve_quota(plan, grow).await?)
        } else {
            None
        };
        let mut guard = IngestGuard::new(
            self.quota.clone(),
            self.store.clone(),
            &plan.workspace,
            reservation.clone(),
        );
        let key = object_key(
            &plan.workspace,
            plan.target.kind,
            &plan.target.id,
            content.media,
        );
        // A new loose receipt joins its owner's list in the same step as its record; a receipt
        // appended to keeps its entry.
        let listed = match (&previous, plan.target.kind) {
            (Some(previous), _) => previous.listed.clone(),
            (None, Kind::Receipt) => Some(listing_entry(now_millis(), &plan.target.id)),
            (None, _) => None,
        };
        let listing = match (&previous, &listed) {
            (None, Some(entry)) => Some(Listing::Add {
                owner: &plan.owner,
                entry,
            }),
            _ => None,
        };
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
            report: content.report,
            listed: listed.clone(),
        };
        let written = match content.body {
            Body::Whole(bytes, crc32c) => {
                let digest = BodyDigest {
                    sha256: content.sha256,
                    crc32c,
                };
                self.store
                    .put(&key, bytes, &digest, content.media.mime())
                    .await
            }
            Body::Appended {
                base,
                base_len,
                tail,
            } => {
                self.store
                    .put_appended(&key, &base, base_len, tail, content.media.mime())
                    .await
            }
        };
        if let Err(err) = written {
            guard.rollback().await;
            return Err(err.into());
        }
        guard.wrote(&key);
        let swapped = self
            .catalog
            .swap_image(&Swap {
                key: &plan.target.catalog_key(),
                expected: previous.as_ref().map(|p| p.key.as_str()),
                image: Some(&record),
                workspace: &plan.workspace,
                release: old.saturating_sub(size),
                reservation: reservation.as_deref().map(|id| (id, grow)),
                default_limit: self.limits.default_quota_bytes,
                listing,
            })
            .await;
        match swapped {
            Ok(Swapped::Done) => guard.disarm(),
            Ok(Swapped::Conflict) => {
                guard.rollback().await;
                return Ok(None);
            }
            Ok(Swapped::QuotaExceeded { limit, used }) => {
                guard.rollback().await;
                return Err(IngestError::QuotaExceeded {
                    workspace: plan.workspace.clone(),
                    limit,
                    used,
                    requested: grow,
                });
            }
            Err(err) => {
                // The swap may have happened with its reply lost: find out before undoing, and
                // never delete an object a record may point to.
                match self
                    .catalog
                    .image(&plan.workspace, &plan.target.catalog_key())
                    .await
                {
                    Ok(Some(current)) if current.key == key => guard.disarm(),
                    Ok(_) => {
                        guard.rollback().await;
                        return Err(err.into());
                    }
                    Err(_) => {
                        guard.abandon();
                        return Err(err.into());
                    }
                }
            }
        }
        self.metrics.bytes_stored.add(
            size,
            &[opentelemetry::KeyValue::new(
                "kind",
                plan.target.kind.name(),
            )],
        );
        if let Some(previous) = previous
            && let Err(err) = self.store.delete(&previous.key).await
        {
            tracing::error!(key = %previous.key, error = %err, "replaced object not deleted; it is an orphan");
        }
        Ok(Some(record))
    }

    /// Reserves `bytes` for the plan under a new reservation ID; a reply lost to a transient
    /// failure is retried once with the same ID, which cannot charge twice.
    async fn reserve_quota(&self, plan: &UploadPlan, bytes: u64) -> Result<String, IngestError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let ttl = std::time::Duration::from_secs(self.limits.reservation_ttl_seconds);
        let default = self.limits.default_quota_bytes;
        let mut reserved = self
            .quota
            .reserve(&plan.workspace, &id, bytes, ttl, default)
            .await;
        if matches!(&reserved, Err(err) if err.is_transient()) {
            reserved = self
                .quota
                .reserve(&plan.workspace, &id, bytes, ttl, default)
                .await;
        }
        match reserved? {
            Reservation::Granted { .. } => Ok(id),
            Reservation::Exceeded { limit, used } => Err(IngestError::QuotaExceeded {
                workspace: plan.workspace.clone(),
                limit,
                used,
                requested: bytes,
            }),
        }
    }
}

/// The lock serialising writes to the plan's target.
pub(crate) fn lock_name(plan: &UploadPlan) -> String {
    format!("target:{}", plan.target.catalog_key())
}
