//! Conversions between the wire messages and the domain types.

use crate::error::IngestError;
use crate::ingest::{
    ImageView, Kind, SessionView, SessionWrite, TargetRef, UploadRequest, Uploaded,
};
use crate::state::{JobRecord, JobStatus};
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
        process_async: header.process_async,
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
        committed_size: 0,
        complete: true,
        target: None,
        expires_at: 0,
        processing_status: v1::ProcessingStatus::Unspecified.into(),
        duplicates: wire_duplicates(&record.duplicates),
    })
}

/// Duplicates as the contract has them.
pub fn wire_duplicates(duplicates: &[crate::state::DuplicateRef]) -> Vec<v1::Duplicate> {
    duplicates
        .iter()
        .map(|d| v1::Duplicate {
            image_id: d.image_id.clone(),
            r#match: if d.match_kind == "exact" {
                v1::DuplicateMatch::Exact
            } else {
                v1::DuplicateMatch::Perceptual
            }
            .into(),
            distance: d.distance,
        })
        .collect()
}

/// A receipt accepted for asynchronous processing, as the upload's answer.
pub fn accepted_response(job: &JobRecord) -> v1::UploadImageResponse {
    v1::UploadImageResponse {
        image_id: job.id.clone(),
        complete: false,
        processing_status: v1::ProcessingStatus::Accepted.into(),
        content_type: job.content_type.clone(),
        ..Default::default()
    }
}

fn reason_value(name: &str) -> i32 {
    v1::ErrorReason::from_str_name(name).map_or(0, Into::into)
}

/// A job as its processing status.
pub fn processing_status(job: &JobRecord) -> v1::ProcessingStatusInfo {
    let status = match job.status {
        JobStatus::Accepted => v1::ProcessingStatus::Accepted,
        JobStatus::Processing => v1::ProcessingStatus::Processing,
        JobStatus::Processed => v1::ProcessingStatus::Processed,
        JobStatus::Failed => v1::ProcessingStatus::Failed,
    };
    v1::ProcessingStatusInfo {
        id: job.id.clone(),
        status: status.into(),
        logs: job
            .logs
            .iter()
            .map(|line| v1::ProcessingLogEntry {
                level: line.level.clone(),
                message: line.message.clone(),
                timestamp_ms: i64::try_from(line.at_ms).unwrap_or(i64::MAX),
                reason: reason_value(&line.reason),
            })
            .collect(),
        owner: job.owner.clone(),
        workspace_id: job.workspace.clone(),
        received_at_ms: i64::try_from(job.created_ms).unwrap_or(i64::MAX),
        failure_reason: reason_value(&job.reason),
        attempts: job.attempts,
        received_bytes: job.size,
        content_type: job.content_type.clone(),
    }
}

/// A domain target as a wire target.
fn wire_target(target: &TargetRef) -> v1::Target {
    let kind = match target.kind {
        Kind::Receipt => v1::TargetKind::Receipt,
        Kind::ExpenseEntry => v1::TargetKind::ExpenseEntry,
        Kind::Invoice => v1::TargetKind::Invoice,
        Kind::Report => v1::TargetKind::Report,
        Kind::WorkspaceExpense => v1::TargetKind::WorkspaceExpense,
    };
    v1::Target {
        kind: kind.into(),
        id: target.id.clone(),
        workspace_id: target.workspace.clone(),
    }
}

/// The session write a header names (one with an `upload_id`).
pub fn session_write(header: &v1::UploadHeader) -> Result<SessionWrite, IngestError> {
    let fixed = |bytes: &[u8], field: &'static str, len: usize| match bytes.len() {
        0 => Ok(None),
        n if n == len => Ok(Some(bytes.to_vec())),
        _ => Err(IngestError::invalid(
            field,
            format!("{field} must be {len} bytes"),
        )),
    };
    let sha1 = fixed(&header.write_sha1, "write_sha1", 20)?
        .map(|bytes| <[u8; 20]>::try_from(bytes.as_slice()).unwrap_or_default());
    let sha256 = fixed(&header.write_sha256, "write_sha256", 32)?
        .map(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).unwrap_or_default());
    Ok(SessionWrite {
        id: header.upload_id.clone(),
        offset: header.write_offset,
        finish: header.finish_write,
        exact: header.exact_offset,
        sha1,
        sha256,
    })
}

/// A session as its status; a write's answer is its `result` (or the committed size).
pub fn upload_status(view: SessionView) -> Result<v1::UploadStatus, IngestError> {
    let complete = view.result.is_some();
    let status = v1::UploadStatus {
        upload_id: view.id.clone(),
        committed_size: view.offset,
        length: view.length.unwrap_or(0),
        complete,
        result: None,
        expires_at: i64::try_from(view.expires_ms / 1000).unwrap_or(i64::MAX),
        client_metadata: view.client_metadata.clone(),
        max_size: view.max_size,
        target: Some(wire_target(&view.target)),
        content_type: view.content_type.clone(),
    };
    Ok(v1::UploadStatus {
        result: complete.then(|| write_response(view)).transpose()?,
        ..status
    })
}

/// A session write's answer: the result once complete, else the committed size.
pub fn write_response(view: SessionView) -> Result<v1::UploadImageResponse, IngestError> {
    let mut response = match view.result {
        Some(uploaded) => upload_response(uploaded)?,
        None => v1::UploadImageResponse {
            complete: false,
            ..Default::default()
        },
    };
    if view.accepted && response.complete {
        response.processing_status = v1::ProcessingStatus::Accepted.into();
    }
    response.committed_size = view.offset;
    response.target = Some(wire_target(&view.target));
    response.expires_at = i64::try_from(view.expires_ms / 1000).unwrap_or(i64::MAX);
    Ok(response)
}

/// An image view as `ImageInfo`.
pub fn image_info(view: ImageView) -> Result<v1::ImageInfo, IngestError> {
    let record = view.record;
    let listed_at_ms = record
        .listed
        .as_deref()
        .and_then(crate::state::listing_time)
        .map_or(0, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
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
        listed_at_ms,
        duplicates: wire_duplicates(&record.duplicates),
    })
}
