//! Conversions between the wire messages and the domain types.

use crate::error::IngestError;
use crate::ingest::{ImageView, Kind, TargetRef, UploadRequest, Uploaded};
use imaging_proto::v1;

/// A wire target as a domain target.
pub fn target(target: Option<v1::Target>) -> Result<TargetRef, IngestError> {
    let target = target.ok_or_else(|| IngestError::invalid("target", "target is required"))?;
    let kind = match v1::TargetKind::try_from(target.kind) {
        Ok(v1::TargetKind::Receipt) => Kind::Receipt,
        Ok(v1::TargetKind::ExpenseEntry) => Kind::ExpenseEntry,
        Ok(v1::TargetKind::Invoice) => Kind::Invoice,
        Ok(v1::TargetKind::Report) => Kind::Report,
        Ok(v1::TargetKind::WorkspaceExpense) => Kind::WorkspaceExpense,
        Ok(v1::TargetKind::Unspecified) | Err(_) => {
            return Err(IngestError::invalid(
                "target.kind",
                "target kind is required",
            ));
        }
    };
    Ok(TargetRef {
        kind,
        id: target.id,
        workspace: target.workspace_id,
    })
}

/// An upload header as a domain request.
pub fn upload_request(header: v1::UploadHeader) -> Result<UploadRequest, IngestError> {
    Ok(UploadRequest {
        target: target(header.target)?,
        content_type: header.content_type,
        declared_size: header.declared_size,
        idempotency_key: header.idempotency_key,
        sha256: header.sha256.to_vec(),
        owner: header.owner,
    })
}

/// A finished upload as its response.
pub fn upload_response(uploaded: Uploaded) -> v1::UploadImageResponse {
    let Uploaded { record, replayed } = uploaded;
    v1::UploadImageResponse {
        image_id: record.image_id,
        url: String::new(),
        path: record.key,
        width: record.width,
        height: record.height,
        size_bytes: record.size,
        content_type: record.content_type,
        page_count: record.page_count,
        sha256: hex::decode(&record.sha256).unwrap_or_default(),
        replayed,
    }
}

/// An image view as `ImageInfo`.
pub fn image_info(view: ImageView) -> v1::ImageInfo {
    let record = view.record;
    v1::ImageInfo {
        image_id: record.image_id,
        url: view.url,
        path: record.key,
        width: record.width,
        height: record.height,
        size_bytes: record.size,
        content_type: record.content_type,
        page_count: record.page_count,
        sha256: hex::decode(&record.sha256).unwrap_or_default(),
        url_expires_in_seconds: view.url_ttl.as_secs(),
        owner: record.owner,
        workspace_id: record.workspace,
    }
}
