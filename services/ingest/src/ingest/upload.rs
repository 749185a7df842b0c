//! The upload flow. `begin_upload` checks everything that can be checked from the header (IDs,
//! type, permissions, target existence, quota) before a byte is read; `finish_upload` verifies
//! the bytes, runs the pipeline off the async runtime and commits per target kind: quota
//! reserved before the object is written, and every failure rolled back by the guard.

use super::Ingestor;
use super::guard::{IngestGuard, TargetLock};
use super::receive::{Received, Receiver};
use super::target::{Kind, TargetRef, object_key, valid_id};
use crate::auth::{self, Claims};
use crate::error::IngestError;
use crate::state::{IdempotencyRecord, ImageRecord, Reservation};
use bytes::Bytes;
use imaging_pipeline::{self as pipeline, Limits, MediaType};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long an idempotency result is kept.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The header of an upload, as sent by the client.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// Where the image goes.
    pub target: TargetRef,
    /// Declared content type.
    pub content_type: String,
    /// Declared size in bytes (0 = unknown).
    pub declared_size: u64,
    /// Optional idempotency key.
    pub idempotency_key: String,
    /// Optional SHA-256 of the bytes (empty or 32 bytes).
    pub sha256: Vec<u8>,
}

/// An upload that passed every check that needs no bytes.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    claims: Claims,
    target: TargetRef,
    workspace: String,
    owner: String,
    media: MediaType,
    declared_size: u64,
    idempotency_key: String,
    sha256: Option<[u8; 32]>,
}

impl UploadPlan {
    /// The resolved target (for receipts, with its new ID).
    pub fn target(&self) -> &TargetRef {
        &self.target
    }
}

/// What the pipeline produced, ready to store.
struct Content {
    bytes: Bytes,
    /// SHA-256 of `bytes`, computed once and used for the record and the storage write.
    sha256: [u8; 32],
    media: MediaType,
    width: u32,
    height: u32,
    pages: u32,
}

/// Runs CPU-bound pipeline work on the blocking pool, in a `pipeline.{step}` span, timed.
async fn blocking<T: Send + 'static>(
    metrics: &crate::telemetry::Metrics,
    step: &'static str,
    work: impl FnOnce() -> Result<T, pipeline::PipelineError> + Send + 'static,
) -> Result<T, IngestError> {
    let span = tracing::info_span!("pipeline", step);
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || span.in_scope(work)).await;
    metrics.conversion_duration.record(
        started.elapsed().as_secs_f64(),
        &[opentelemetry::KeyValue::new("step", step)],
    );
    result
        .map_err(|err| IngestError::Internal(format!("pipeline task failed: {err}")))?
        .map_err(IngestError::from)
}

impl Ingestor {
    fn pipeline_limits(&self) -> Limits {
        Limits {
            max_pixels: self.limits.max_pixels,
            max_edge: self.limits.webp_max_edge,
            webp_quality: self.limits.webp_quality,
        }
    }

    /// Checks an upload's header. Nothing is reserved or written.
    pub async fn begin_upload(
        &self,
        claims: Claims,
        request: UploadRequest,
    ) -> Result<UploadPlan, IngestError> {
        let mut target = request.target;
        target.validate(true)?;
        let media = MediaType::from_declared(&request.content_type)
            .filter(|media| target.kind.accepts(*media))
            .ok_or_else(|| IngestError::UnsupportedMediaType(request.content_type.clone()))?;
        if request.declared_size > self.limits.max_upload_bytes {
            return Err(IngestError::FileTooLarge {
                limit: self.limits.max_upload_bytes,
            });
        }
        let sha256 = match request.sha256.len() {
            0 => None,
            32 => request.sha256.as_slice().try_into().ok(),
            _ => {
                return Err(IngestError::InvalidRequest(
                    "sha256 must be 32 bytes".to_owned(),
                ));
            }
        };
        let key = &request.idempotency_key;
        if !key.is_empty() && (key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(IngestError::InvalidRequest(
                "idempotency key must be 1-128 visible ASCII characters".to_owned(),
            ));
        }
        let (workspace, owner) = if target.kind == Kind::Receipt {
            if !target.id.is_empty() {
                return Err(IngestError::InvalidRequest(
                    "receipt image IDs are made by the server".to_owned(),
                ));
            }
            if !valid_id(&claims.ws) {
                return Err(IngestError::InvalidId("workspace id"));
            }
            target.id = uuid::Uuid::new_v4().simple().to_string();
            (claims.ws.clone(), claims.sub.clone())
        } else {
            let record = self
                .catalog
                .target(&target.catalog_key())
                .await?
                .ok_or(IngestError::TargetNotFound("target"))?;
            auth::can_use_target(
                &claims,
                target.kind.access(),
                &record.workspace,
                &record.owner,
            )?;
            (record.workspace, record.owner)
        };
        self.precheck_quota(&workspace, target.kind, request.declared_size)
            .await?;
        Ok(UploadPlan {
            claims,
            target,
            workspace,
            owner,
            media,
            declared_size: request.declared_size,
            idempotency_key: request.idempotency_key,
            sha256,
        })
    }

    /// Refuses at once if the workspace is full or the declared size cannot fit. A replaced
    /// workspace image shrinks on conversion, so only fullness is checked there.
    async fn precheck_quota(
        &self,
        workspace: &str,
        kind: Kind,
        declared: u64,
    ) -> Result<(), IngestError> {
        let limit = self
            .quota
            .limit(workspace)
            .await?
            .unwrap_or(self.limits.default_quota_bytes);
        let used = self.quota.used(workspace).await?;
        let requested = if kind == Kind::WorkspaceExpense {
            0
        } else {
            declared
        };
        if used >= limit || used.saturating_add(requested) > limit {
            return Err(IngestError::QuotaExceeded {
                limit,
                used,
                requested,
            });
        }
        Ok(())
    }

    /// A receiver that enforces this service's limits on the plan's bytes.
    pub fn receiver(&self, plan: &UploadPlan) -> Receiver {
        Receiver::new(
            plan.media,
            plan.declared_size,
            self.limits.max_upload_bytes,
            self.limits.max_chunk_bytes,
        )
    }

    /// Verifies, converts and stores a received upload. Returns the record and whether it is a
    /// replay of an earlier upload with the same idempotency key.
    pub async fn finish_upload(
        &self,
        plan: UploadPlan,
        received: Received,
    ) -> Result<(ImageRecord, bool), IngestError> {
        if plan
            .sha256
            .is_some_and(|expected| expected != received.sha256)
        {
            return Err(IngestError::ChecksumMismatch);
        }
        let size = received.bytes.len() as u64;
        if plan.declared_size != 0 && plan.declared_size != size {
            return Err(IngestError::SizeMismatch {
                declared: plan.declared_size,
                received: size,
            });
        }
        if plan.idempotency_key.is_empty() {
            return Ok((self.store_upload(&plan, received).await?, false));
        }
        let scope = format!("{}:{}", plan.claims.sub, plan.idempotency_key);
        let lock = TargetLock::acquire(
            self.catalog.clone(),
            format!("idem:{scope}"),
            self.lock_wait,
        )
        .await?;
        let upload_sha256 = hex::encode(received.sha256);
        let label = match plan.target.kind {
            Kind::Receipt => Kind::Receipt.name().to_owned(),
            _ => plan.target.catalog_key(),
        };
        let result = match self.catalog.idempotency(&scope).await {
            Err(err) => Err(err.into()),
            Ok(Some(done)) if done.upload_sha256 == upload_sha256 && done.target == label => {
                Ok((done.image, true))
            }
            Ok(Some(_)) => Err(IngestError::IdempotencyKeyReused),
            Ok(None) => match self.store_upload(&plan, received).await {
                Ok(image) => {
                    let done = IdempotencyRecord {
                        upload_sha256,
                        target: label,
                        image: image.clone(),
                    };
                    if let Err(err) = self
                        .catalog
                        .put_idempotency(&scope, &done, IDEMPOTENCY_TTL)
                        .await
                    {
                        tracing::warn!(error = %err, "idempotency result not kept");
                    }
                    Ok((image, false))
                }
                Err(err) => Err(err),
            },
        };
        lock.release().await;
        result
    }

    async fn store_upload(
        &self,
        plan: &UploadPlan,
        received: Received,
    ) -> Result<ImageRecord, IngestError> {
        let limits = self.pipeline_limits();
        let media = plan.media;
        match plan.target.kind {
            Kind::Receipt | Kind::ExpenseEntry | Kind::Invoice => {
                let bytes = received.bytes.clone();
                let seen = blocking(&self.metrics, "inspect", move || {
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
                if plan.target.kind == Kind::Receipt {
                    return self.commit(plan, content, None).await;
                }
                let lock = self.lock(&plan.target).await?;
                let result = match self.catalog.image(&plan.target.catalog_key()).await {
                    Ok(Some(_)) => Err(IngestError::AlreadyAttached),
                    Ok(None) => self.commit(plan, content, None).await,
                    Err(err) => Err(err.into()),
                };
                lock.release().await;
                result
            }
            Kind::Report => {
                let bytes = received.bytes.clone();
                blocking(&self.metrics, "inspect", move || {
                    pipeline::inspect(&bytes, media, &limits)
                })
                .await?;
                let lock = self.lock(&plan.target).await?;
                let result = self.append_report(plan, received.bytes, limits).await;
                lock.release().await;
                result
            }
            Kind::WorkspaceExpense => {
                if pipeline::sniff(&received.bytes) != Some(media) {
                    return Err(IngestError::ContentTypeMismatch {
                        declared: media.mime(),
                    });
                }
                let bytes = received.bytes;
                let webp = blocking(&self.metrics, "webp", move || {
                    pipeline::to_webp(&bytes, media, &limits)
                })
                .await?;
                let content = Content {
                    sha256: Sha256::digest(&webp.bytes).into(),
                    bytes: Bytes::from(webp.bytes),
                    media: MediaType::Webp,
                    width: webp.width,
                    height: webp.height,
                    pages: 1,
                };
                let lock = self.lock(&plan.target).await?;
                let result = match self.catalog.image(&plan.target.catalog_key()).await {
                    Ok(previous) => self.commit(plan, content, previous).await,
                    Err(err) => Err(err.into()),
                };
                lock.release().await;
                result
            }
        }
    }

    /// Appends to the report PDF; the caller holds the report's lock.
    async fn append_report(
        &self,
        plan: &UploadPlan,
        bytes: Bytes,
        limits: Limits,
    ) -> Result<ImageRecord, IngestError> {
        let media = plan.media;
        let previous = self.catalog.image(&plan.target.catalog_key()).await?;
        let report = match &previous {
            None => {
                blocking(&self.metrics, "report", move || {
                    pipeline::start_report(&bytes, media, &limits)
                })
                .await?
            }
            Some(current) => {
                let existing = self.store.get(&current.key).await?.ok_or_else(|| {
                    IngestError::Internal(format!("report object {} is missing", current.key))
                })?;
                blocking(&self.metrics, "report", move || {
                    pipeline::append_to_report(&existing, &bytes, media, &limits)
                })
                .await?
            }
        };
        let content = Content {
            sha256: Sha256::digest(&report.bytes).into(),
            bytes: Bytes::from(report.bytes),
            media: MediaType::Pdf,
            width: 0,
            height: 0,
            pages: report.page_count,
        };
        self.commit(plan, content, previous).await
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
