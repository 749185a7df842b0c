//! The first step of an upload: everything that can be checked from the header alone (IDs,
//! declared type, size, checksum and key formats, the target, the caller's permission), before
//! a byte is read or anything is reserved.

use super::Ingestor;
use super::policy::Policy;
use super::target::{Kind, TargetRef, valid_id};
use crate::auth::{self, Claims};
use crate::error::IngestError;
use imaging_pipeline::MediaType;

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
    /// New receipts: their owner (empty = the caller; another user needs an admin role).
    pub owner: String,
    /// Processed asynchronously ([`Ingestor::accept`]), under the asynchronous limits.
    pub process_async: bool,
}

/// An upload that passed every check that needs no bytes.
#[derive(Debug, Clone)]
pub struct UploadPlan {
    /// The caller.
    pub claims: Claims,
    /// The resolved target (for receipts, with its new ID).
    pub target: TargetRef,
    /// What the target's kind does with uploads.
    pub policy: Policy,
    /// The workspace charged.
    pub workspace: String,
    /// The target's owner.
    pub owner: String,
    /// The declared (and to be verified) type.
    pub media: MediaType,
    /// Declared size (0 = unknown).
    pub declared_size: u64,
    /// Idempotency key (empty = none).
    pub idempotency_key: String,
    /// Declared SHA-256, if any.
    pub sha256: Option<[u8; 32]>,
    /// A quota reservation already held for this upload (a resumable session's: its ID and
    /// bytes), used by the commit instead of a new one where it is large enough.
    pub reservation: Option<(String, u64)>,
    /// The most bytes the upload may have.
    pub max_bytes: u64,
    /// An image with a side over this many pixels is reduced to it on its long side (0: never).
    pub max_side: u32,
}

impl Ingestor {
    /// Checks an upload's header and resolves its target. Nothing is reserved or written.
    pub(crate) async fn plan(
        &self,
        claims: Claims,
        request: UploadRequest,
    ) -> Result<UploadPlan, IngestError> {
        let mut target = request.target;
        target.validate(true)?;
        // An upload to an existing receipt's ID appends to it, as to a report.
        let appends_to_receipt = target.kind == Kind::Receipt && !target.id.is_empty();
        let policy = if appends_to_receipt {
            Policy::receipt_append()
        } else {
            target.kind.policy()
        };
        let media = MediaType::from_declared(&request.content_type)
            .filter(|media| policy.accepts(*media))
            .ok_or_else(|| IngestError::UnsupportedMediaType(request.content_type.clone()))?;
        let max_bytes = self.max_upload_bytes(request.process_async);
        if request.declared_size > max_bytes {
            return Err(IngestError::FileTooLarge { limit: max_bytes });
        }
        let sha256 = match request.sha256.len() {
            0 => None,
            32 => request.sha256.as_slice().try_into().ok(),
            _ => return Err(IngestError::invalid("sha256", "sha256 must be 32 bytes")),
        };
        let key = &request.idempotency_key;
        if !key.is_empty() && (key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(IngestError::invalid(
                "idempotency_key",
                "idempotency key must be 1-128 visible ASCII characters",
            ));
        }
        // The user the upload is for, checked before anything is looked up.
        let acting_for = super::images::acting_for_owner(&claims, &target, &request.owner)?;
        let (workspace, owner) = if target.kind == Kind::Receipt {
            if !valid_id(&claims.ws) {
                return Err(IngestError::InvalidId("token ws"));
            }
            if appends_to_receipt {
                let record = self
                    .catalog
                    .image(&claims.ws, &target.catalog_key())
                    .await?
                    .ok_or(IngestError::ImageNotFound)?;
                auth::can_use_target(&claims, policy.access, &record.workspace, &record.owner)?;
                if acting_for.is_some_and(|owner| owner != record.owner) {
                    return Err(IngestError::ImageNotFound);
                }
                (record.workspace, record.owner)
            } else {
                // A receipt is charged to the caller's workspace, which must exist.
                if self.quota.limit(&claims.ws).await?.is_none() {
                    return Err(IngestError::TargetNotFound("workspace"));
                }
                let owner = acting_for.unwrap_or_else(|| claims.sub.clone());
                target.id = uuid::Uuid::new_v4().simple().to_string();
                (claims.ws.clone(), owner)
            }
        } else {
            let record = self
                .catalog
                .target(&target.catalog_key())
                .await?
                .ok_or(IngestError::TargetNotFound("target"))?;
            auth::can_use_target(&claims, policy.access, &record.workspace, &record.owner)?;
            (record.workspace, record.owner)
        };
        Ok(UploadPlan {
            claims,
            target,
            policy,
            workspace,
            owner,
            media,
            declared_size: request.declared_size,
            idempotency_key: request.idempotency_key,
            sha256,
            reservation: None,
            max_bytes,
            max_side: 0,
        })
    }

    /// The most bytes an upload may have: the asynchronous dialect's own limit, or the
    /// synchronous one.
    pub(crate) fn max_upload_bytes(&self, process_async: bool) -> u64 {
        if process_async {
            self.limits.async_receipts.max_bytes
        } else {
            self.limits.upload.max_bytes
        }
    }

    /// Checks an asynchronous upload's header (a new receipt, no idempotency key) as well as
    /// [`Ingestor::plan`] does every upload's, and its type against the asynchronous dialect's.
    pub(crate) async fn plan_async(
        &self,
        claims: Claims,
        request: UploadRequest,
    ) -> Result<UploadPlan, IngestError> {
        self.check_async(&request)?;
        let plan = self.plan(claims, request).await?;
        if !self.async_accepts(plan.media) {
            return Err(IngestError::UnsupportedMediaType(
                plan.media.mime().to_owned(),
            ));
        }
        Ok(plan)
    }

    /// Refuses at once if the workspace is full or the declared size cannot fit. A converted
    /// upload's stored size is not its own, so only fullness is checked for those.
    pub(crate) async fn precheck_quota(&self, plan: &UploadPlan) -> Result<(), IngestError> {
        let limit = self
            .quota
            .limit(&plan.workspace)
            .await?
            .unwrap_or(self.limits.quota.default_bytes);
        let used = self.quota.used(&plan.workspace).await?;
        let requested = if plan.policy.changes_size(plan.media) {
            0
        } else {
            plan.declared_size
        };
        if used >= limit || used.saturating_add(requested) > limit {
            return Err(IngestError::QuotaExceeded {
                workspace: plan.workspace.clone(),
                limit,
                used,
                requested,
            });
        }
        Ok(())
    }
}
