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
    /// For a loose receipt: its entry in its owner's list (see [`listing_entry`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<String>,
}

/// Largest time in the listing entries (in ms since 1970; the year 2286).
const LISTING_EPOCH_END: u64 = 9_999_999_999_999;

/// The entry of an image in its owner's list: the list holds entries in byte order, which is
/// newest first (`9999999999999 - created_ms`, 13 digits), then by image ID. A page that starts
/// after an entry is stable while images are added (they sort before it) or removed.
pub fn listing_entry(created_ms: u64, image_id: &str) -> String {
    format!(
        "{:013}-{image_id}",
        LISTING_EPOCH_END.saturating_sub(created_ms.min(LISTING_EPOCH_END))
    )
}

/// The image ID of a listing entry, if it is one.
pub fn listing_image(entry: &str) -> Option<&str> {
    let (time, image) = entry.split_once('-')?;
    (time.len() == 13 && time.bytes().all(|b| b.is_ascii_digit()) && !image.is_empty())
        .then_some(image)
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
