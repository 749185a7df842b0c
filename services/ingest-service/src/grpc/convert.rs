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

/// A record's SHA-256 as bytes; a record whose digest is not hex is damaged (an internal error,
/// never an empty digest a client would take for the real one).
fn digest(hex_digest: &str) -> Result<Vec<u8>, IngestError> {
    match hex::decode(hex_digest) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(IngestError::Internal(format!(
            "image record has a damaged sha256: {hex_digest:?}"
        ))),
    }
}

/// A finished upload as its response.
pub fn upload_response(uploaded: Uploaded) -> Result<v1::UploadImageResponse, IngestError> {
    let Uploaded { record, replayed } = uploaded;
    Ok(v1::UploadImageResponse {
        image_id: record.image_id,
        url: String::new(),
        path: record.key,
        width: record.width,
        height: record.height,
        size_bytes: record.size,
        content_type: record.content_type,
        page_count: record.page_count,
        sha256: digest(&record.sha256)?,
        replayed,
    })
}

/// An image view as `ImageInfo`.
pub fn image_info(view: ImageView) -> Result<v1::ImageInfo, IngestError> {
    let record = view.record;
    Ok(v1::ImageInfo {
        image_id: record.image_id,
        url: view.url,
        path: record.key,
        width: record.width,
        height: record.height,
        size_bytes: record.size,
        content_type: record.content_type,
        page_count: record.page_count,
        sha256: digest(&record.sha256)?,
        url_expires_in_seconds: view.url_ttl.as_secs(),
        owner: record.owner,
        workspace_id: record.workspace,
    })
}
