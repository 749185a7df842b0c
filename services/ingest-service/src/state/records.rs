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

/// A resumable upload session: what the upload is for, how far it got, and where its bytes are.
/// Every change is a compare-and-set on `version` ([`crate::state::Catalog::update_session`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session's ID (random, 128 bits, hex).
    pub id: String,
    /// The caller's workspace (JWT `ws`): the session is looked up under it.
    pub scope: String,
    /// The caller (JWT `sub`): only they see the session.
    pub caller: String,
    /// Bumped by every change.
    pub version: u64,
    /// When it was started and when it expires, ms since 1970.
    pub created_ms: u64,
    /// See `created_ms`.
    pub expires_ms: u64,
    /// The upload it stands for, checked when it was started.
    pub upload: SessionUpload,
    /// The declared length (`None`: not known until the last write).
    pub length: Option<u64>,
    /// Bytes committed.
    pub offset: u64,
    /// The first bytes (at most 16, hex), for the type check.
    pub head: String,
    /// The running SHA-256 of the committed bytes (see `ingest::digest`).
    pub digest: String,
    /// Where the committed bytes are in storage.
    pub staged: crate::storage::Staged,
    /// The quota reservation held for the session (its ID and bytes).
    pub reservation: Option<(String, u64)>,
    /// Text the client gave at the start (tus `Upload-Metadata`).
    #[serde(default)]
    pub client_metadata: String,
    /// The image, once the upload is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<SessionResult>,
}

/// The upload a session stands for, as planned when it was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUpload {
    /// Target kind (its contract name, e.g. `RECEIPT`).
    pub kind: String,
    /// Target ID (a new receipt's ID is chosen when the session starts).
    pub target_id: String,
    /// The target's workspace (workspace expenses).
    pub target_workspace: String,
    /// True for an append to an existing receipt.
    pub appends: bool,
    /// The workspace charged.
    pub workspace: String,
    /// The target's owner.
    pub owner: String,
    /// The declared content type.
    pub content_type: String,
    /// The idempotency key (empty: the session's own).
    pub idempotency_key: String,
    /// The declared SHA-256, hex (empty: none).
    pub sha256: String,
    /// The file name given.
    #[serde(default)]
    pub file_name: String,
}

/// The result of a completed session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResult {
    /// The stored image.
    pub record: ImageRecord,
    /// True if it replayed an earlier upload.
    pub replayed: bool,
}
