//! Records kept in the catalog, serialized as JSON in both backends.

use serde::{Deserialize, Serialize};

/// A registered target: who owns it and which workspace it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Workspace (company) the target belongs to.
    pub workspace: String,
    /// User (`sub`) who owns it.
    pub owner: String,
}

/// The current image of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image ID handed to clients.
    pub image_id: String,
    /// Object key in storage.
    pub key: String,
    /// Workspace charged for the bytes.
    pub workspace: String,
    /// User who uploaded it (for receipts, the owner).
    pub owner: String,
    /// Stored content type.
    pub content_type: String,
    /// Stored size in bytes.
    pub size: u64,
    /// Pixel width (0 for PDFs).
    pub width: u32,
    /// Pixel height (0 for PDFs).
    pub height: u32,
    /// Pages (1 for images).
    pub page_count: u32,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// For a report PDF: what an append needs, so that it reads nothing of the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportState>,
}

/// What an append to a report needs besides the record: where the PDF's structure is, and the
/// SHA-256 of its bytes so far in a resumable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    /// Where the report's page tree, catalog and last cross-reference section are.
    pub layout: imaging_pipeline::ReportLayout,
    /// The running SHA-256 of the report's bytes (see `ingest::digest`).
    pub digest: String,
}

/// The result of a finished upload, kept under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hex SHA-256 of the uploaded bytes.
    pub upload_sha256: String,
    /// Catalog key of the target it was uploaded to (`RECEIPT` for loose receipts, whose IDs
    /// are new on every upload).
    pub target: String,
    /// The record as stored by that upload.
    pub image: ImageRecord,
}
