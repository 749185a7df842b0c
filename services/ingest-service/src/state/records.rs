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
    /// The picture's 64-bit perceptual hash (16 hex digits), if it has one: with `sha256`, what
    /// the duplicate index holds of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phash: Option<String>,
    /// Earlier images of the workspace this one duplicates, found when it was stored (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<DuplicateRef>,
}

/// An earlier image of the workspace that an upload matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateRef {
    /// Its image ID.
    pub image_id: String,
    /// `exact` (the same stored bytes) or `perceptual` (the same picture).
    #[serde(rename = "match")]
    pub match_kind: String,
    /// Bits the perceptual hashes differ in (0 for an exact match).
    pub distance: u32,
}

/// What the duplicate index keeps of an image of a workspace: found by its SHA-256 and by each
/// quarter of its perceptual hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DupEntry {
    /// The image's ID.
    pub image_id: String,
    /// Hex SHA-256 of its stored bytes.
    pub sha256: String,
    /// Its perceptual hash (16 hex digits), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phash: Option<String>,
    /// Its block signature, base64 (see `imaging_pipeline::signature_distance`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
    /// When it was indexed, ms since 1970 (newest candidates are read first).
    pub created_ms: u64,
}

impl DupEntry {
    /// What an index lookup by `sha256` and `phash` needs (no image).
    pub fn probe(sha256: &str, phash: Option<&str>) -> Self {
        DupEntry {
            image_id: String::new(),
            sha256: sha256.to_owned(),
            phash: phash.map(str::to_owned),
            signature: String::new(),
            created_ms: 0,
        }
    }

    /// The four 16-bit quarters of the perceptual hash (4 hex digits each): an image within 3
    /// bits shares at least one.
    pub fn bands(&self) -> Option<[String; 4]> {
        let hash = self.phash.as_deref().filter(|h| h.len() == 16)?;
        Some([0, 1, 2, 3].map(|i| format!("{i}{}", &hash[i * 4..i * 4 + 4])))
    }
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

/// When the image of a listing entry was listed (ms since 1970), if it is an entry.
pub fn listing_time(entry: &str) -> Option<u64> {
    listing_image(entry)?;
    let inverted: u64 = entry.get(..13)?.parse().ok()?;
    Some(LISTING_EPOCH_END - inverted.min(LISTING_EPOCH_END))
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
    /// A new receipt processed asynchronously: the completion queues it.
    #[serde(default)]
    pub process_async: bool,
}

/// The result of a completed session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResult {
    /// The stored image.
    pub record: ImageRecord,
    /// True if it replayed an earlier upload.
    pub replayed: bool,
}

/// Where an asynchronously processed receipt is (Concur Receipts v4 `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Stored and queued; no worker has started on it.
    Accepted,
    /// A worker took it (the attempt's number is in the log).
    Processing,
    /// Done: the image is stored.
    Processed,
    /// Given up on: the reason is in the log; nothing is stored and its quota was released.
    Failed,
}

impl JobStatus {
    /// True once the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Processed | JobStatus::Failed)
    }

    /// The status as Concur Receipts v4 names it.
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Accepted => "ACCEPTED",
            JobStatus::Processing => "PROCESSING",
            JobStatus::Processed => "PROCESSED",
            JobStatus::Failed => "FAILED",
        }
    }
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLog {
    /// `INFO`, `WARNING` or `ERROR`.
    pub level: String,
    /// What happened, in words a user can read (never internals).
    pub message: String,
    /// When, ms since 1970.
    pub at_ms: u64,
    /// For a refusal or a failed attempt: the `ErrorReason` name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A receipt accepted for asynchronous processing (Concur Receipts v4, gRPC `process_async`):
/// the received bytes wait in storage under `source` until a worker runs them through the same
/// checks, conversion and commit as a synchronous upload. Every change is a compare-and-set on
/// `version` ([`crate::state::Catalog::update_job`]), made together with the job's queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's ID, which is also the receipt's image ID (random, 128 bits, hex).
    pub id: String,
    /// The workspace charged.
    pub workspace: String,
    /// The receipt's owner (JWT `sub`).
    pub owner: String,
    /// Who uploaded it (JWT `sub`; an admin may upload for another user).
    pub caller: String,
    /// Bumped by every change.
    pub version: u64,
    /// When it was accepted, ms since 1970.
    pub created_ms: u64,
    /// When the record is forgotten once the job is final (its status is kept until then), ms
    /// since 1970.
    pub expires_ms: u64,
    /// Where it is.
    pub status: JobStatus,
    /// Attempts started so far (a worker that died counts).
    pub attempts: u32,
    /// Object key of the bytes as received (deleted once the job is final).
    pub source: String,
    /// The declared type (checked against the bytes on arrival).
    pub content_type: String,
    /// File name given, if any.
    #[serde(default)]
    pub file_name: String,
    /// Bytes received.
    pub size: u64,
    /// Hex SHA-256 of the received bytes.
    pub sha256: String,
    /// The quota reservation held until the commit (its ID and bytes).
    pub reservation: Option<(String, u64)>,
    /// Images with a side over this many pixels are reduced to it on their long side (0: never).
    pub max_side: u32,
    /// What happened, one line per step and attempt.
    pub logs: Vec<JobLog>,
    /// For a failed job, the `ErrorReason` name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// For a processed job, the stored image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRecord>,
}

/// A job handed to a worker by [`crate::state::Catalog::take_jobs`]: the job's ID and the queue
/// entry that holds it (a Redis stream entry ID, or a lease token in the embedded store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job's ID.
    pub job: String,
    /// The queue entry.
    pub entry: String,
}

/// What happens to a job's queue entry when its record changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobNext<'a> {
    /// It stays with the worker that holds it.
    Hold(&'a Delivery),
    /// It is given back, to be taken again at the time (ms since 1970).
    Retry(&'a Delivery, u64),
    /// It leaves the queue (the job is final).
    Done(&'a Delivery),
}

/// A webhook of a workspace: every event of the workspace is POSTed to `url`, signed with
/// `secret` as Standard Webhooks say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// Its ID (random, 128 bits, hex).
    pub id: String,
    /// The workspace whose events it receives.
    pub workspace: String,
    /// Where deliveries are POSTed (`http` or `https`).
    pub url: String,
    /// The signing secret, `whsec_` and the key in base64.
    pub secret: String,
    /// When it was registered, ms since 1970.
    pub created_ms: u64,
}

/// Where a webhook delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryState {
    /// Not delivered yet (it may have failed; it is retried at `next_ms`).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Retried for the whole retry period without success; kept to be seen.
    Failed,
}

/// One event on its way to one webhook. Every delivery of a webhook waits in the webhook's
/// queue, oldest first, and the oldest is delivered before the next (in order); a settled one
/// moves to the webhook's log of recent deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookDelivery {
    /// The event's ID (the `webhook-id` header).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event, as the request body.
    pub event: String,
    /// When it was queued, ms since 1970.
    pub created_ms: u64,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due, ms since 1970.
    pub next_ms: u64,
    /// Where it is.
    pub state: DeliveryState,
    /// The endpoint's last HTTP status (0: none, the request failed).
    #[serde(default)]
    pub last_code: u16,
    /// Why the last attempt failed, in words (never the endpoint's body).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// When it was settled (delivered or failed), ms since 1970.
    #[serde(default)]
    pub finished_ms: u64,
}
