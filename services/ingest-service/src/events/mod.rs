//! Events: every committed change (an image stored, replaced, appended to or deleted; a
//! receipt's processing status changed) is announced by a CloudEvents 1.0 JSON document that the
//! change writes to an outbox in its own atomic step (`state`: the Lua script, the redb
//! transaction), so a change without its event, or an event without its change, cannot exist.
//! [`relay`] delivers the outboxes at least once, in order per outbox, to NATS JetStream
//! ([`nats`]), where the event ID as `Nats-Msg-Id` makes a redelivery harmless, and queues them
//! for the workspace's [`webhooks`], which a dispatcher in every replica delivers.

mod nats;
pub mod relay;
pub mod webhooks;

pub use crate::state::DuplicateRef;
use crate::state::{ImageRecord, JobRecord};
use serde::{Deserialize, Serialize};

/// What a change did to a target's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A first image stored.
    Stored,
    /// An image replaced by another.
    Replaced,
    /// Pages appended to a report or a receipt.
    Appended,
    /// The image removed.
    Deleted,
}

impl Change {
    /// The CloudEvents `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Change::Stored => "imaging.image.stored",
            Change::Replaced => "imaging.image.replaced",
            Change::Appended => "imaging.image.appended",
            Change::Deleted => "imaging.image.deleted",
        }
    }
}

/// The CloudEvents `type` of a receipt's processing status change.
pub const STATUS_CHANGED: &str = "imaging.receipt.status";

/// A CloudEvents 1.0 document in its JSON form (structured mode).
#[derive(Debug, Serialize, Deserialize)]
pub struct CloudEvent<D> {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event (128 random bits, hex): the broker's deduplication key, the webhook ID.
    pub id: String,
    /// `/imaging/workspaces/{workspace}`.
    pub source: String,
    /// E.g. `imaging.image.stored`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change was made (RFC 3339).
    pub time: String,
    /// The target's catalog key (`RECEIPT:{id}`, `EXPENSE_ENTRY:{id}`, ...): events of one
    /// subject are delivered in order.
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// What changed.
    pub data: D,
}

/// The target an event is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventTarget {
    /// Its kind's contract name (`RECEIPT`, `EXPENSE_ENTRY`, ...).
    pub kind: String,
    /// Its ID.
    pub id: String,
}

/// `data` of an image event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageData {
    /// The workspace charged.
    pub workspace: String,
    /// The target.
    pub target: EventTarget,
    /// The image's ID.
    pub image_id: String,
    /// The owner (JWT `sub`).
    pub owner: String,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// Stored size in bytes.
    pub size: u64,
    /// Stored content type.
    pub content_type: String,
    /// Pages (1 for images).
    pub pages: u32,
    /// Earlier images of the workspace this one duplicates (at most 5).
    pub duplicates: Vec<DuplicateRef>,
}

/// `data` of a status event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusData {
    /// The workspace charged.
    pub workspace: String,
    /// The receipt.
    pub target: EventTarget,
    /// The receipt's image ID.
    pub image_id: String,
    /// The owner (JWT `sub`).
    pub owner: String,
    /// `ACCEPTED`, `PROCESSING`, `PROCESSED` or `FAILED`.
    pub status: String,
    /// For `FAILED`: the `ErrorReason` name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Attempts started so far.
    pub attempts: u32,
}

fn envelope<D: Serialize>(kind: &str, workspace: &str, subject: String, data: D) -> String {
    let event = CloudEvent {
        specversion: "1.0".to_owned(),
        id: uuid::Uuid::new_v4().simple().to_string(),
        source: format!("/imaging/workspaces/{workspace}"),
        kind: kind.to_owned(),
        time: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        subject,
        datacontenttype: "application/json".to_owned(),
        data,
    };
    serde_json::to_string(&event).unwrap_or_default()
}

/// The event of `change` to the image `record` of the target `kind`/`id`.
pub fn image_event(
    change: Change,
    kind: &str,
    id: &str,
    record: &ImageRecord,
    duplicates: &[DuplicateRef],
) -> String {
    envelope(
        change.event_type(),
        &record.workspace,
        format!("{kind}:{id}"),
        ImageData {
            workspace: record.workspace.clone(),
            target: EventTarget {
                kind: kind.to_owned(),
                id: id.to_owned(),
            },
            image_id: record.image_id.clone(),
            owner: record.owner.clone(),
            sha256: record.sha256.clone(),
            size: record.size,
            content_type: record.content_type.clone(),
            pages: record.page_count,
            duplicates: duplicates.to_vec(),
        },
    )
}

/// The event of a receipt's processing status, as `job` now has it.
pub fn status_event(job: &JobRecord) -> String {
    envelope(
        STATUS_CHANGED,
        &job.workspace,
        format!("RECEIPT:{}", job.id),
        StatusData {
            workspace: job.workspace.clone(),
            target: EventTarget {
                kind: "RECEIPT".to_owned(),
                id: job.id.clone(),
            },
            image_id: job.id.clone(),
            owner: job.owner.clone(),
            status: job.status.name().to_owned(),
            reason: job.reason.clone(),
            attempts: job.attempts,
        },
    )
}

/// What the relay reads of an event: enough to route it.
#[derive(Debug, Deserialize)]
pub(crate) struct Routing {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: RoutingData,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RoutingData {
    pub workspace: String,
}

/// A subject token for `text`: NATS subjects cannot hold `.`, `*`, `>` or white space in a token.
pub(crate) fn subject_token(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_event_is_a_cloud_event() {
        let record = ImageRecord {
            image_id: "r1".into(),
            key: "k".into(),
            workspace: "acme".into(),
            owner: "alice".into(),
            content_type: "image/png".into(),
            size: 42,
            width: 1,
            height: 1,
            page_count: 1,
            sha256: "ab".into(),
            report: None,
            listed: None,
            phash: None,
            duplicates: Vec::new(),
        };
        let json = image_event(Change::Stored, "RECEIPT", "r1", &record, &[]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["type"], "imaging.image.stored");
        assert_eq!(value["subject"], "RECEIPT:r1");
        assert_eq!(value["source"], "/imaging/workspaces/acme");
        assert_eq!(value["data"]["size"], 42);
        assert_eq!(value["id"].as_str().unwrap().len(), 32);
        assert!(
            time::OffsetDateTime::parse(
                value["time"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()
        );
        assert_eq!(subject_token("a.b*c> d"), "a_b_c__d");
    }
}
