//! Quota counters and the catalog (registered targets, image records, idempotency results,
//! per-target locks) behind two small traits, implemented by Redis (`redis/`, one server or a
//! cluster) and by an embedded database (`embedded/`), each a folder with a file per concern.
//! The contract tests in `tests/` run against every backend.

mod embedded;
mod records;
mod redis;

pub use embedded::EmbeddedState;
pub use records::{
    Delivery, DeliveryState, DupEntry, DuplicateRef, HookDelivery, IdempotencyRecord, ImageRecord,
    JobLog, JobNext, JobRecord, JobStatus, ReportState, SessionRecord, SessionResult,
    SessionUpload, TargetRecord, WebhookRecord, listing_entry, listing_image, listing_time,
};
pub use redis::RedisState;

use async_trait::async_trait;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in ms since 1970 (reservation expiries, listing entries).
pub fn now_millis() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// A duration in whole ms (saturating), as both backends store times.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A failure of the state backend. Never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend could not be reached or did not answer in time.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("state backend data error: {0}")]
    Data(String),
}

impl StateError {
    /// True when the backend could not be reached (clients are told to retry); unreadable
    /// data is permanent.
    pub fn is_transient(&self) -> bool {
        matches!(self, StateError::Unavailable(_))
    }
}

/// Outcome of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved; committed usage plus live reservations are now `used`.
    Granted { used: u64 },
    /// Refused; nothing changed.
    Exceeded { limit: u64, used: u64 },
}

/// A change of a target's image record, made by [`Catalog::swap_image`] in one atomic step.
#[derive(Debug, Clone, Copy)]
pub struct Swap<'a> {
    /// The target's catalog key.
    pub key: &'a str,
    /// The object key of the record the writer read (`None`: it read no record).
    pub expected: Option<&'a str>,
    /// The new record (`None`: the record is removed).
    pub image: Option<&'a ImageRecord>,
    /// The workspace charged.
    pub workspace: &'a str,
    /// Bytes the previous object used beyond the new one, given back.
    pub release: u64,
    /// The reservation (its ID and bytes) that becomes usage, if the change grows the usage.
    pub reservation: Option<(&'a str, u64)>,
    /// The limit of a workspace without its own (checked if the reservation lapsed).
    pub default_limit: u64,
    /// The change of an owner's list of loose receipts that goes with this one.
    pub listing: Option<Listing<'a>>,
    /// The event announcing the change (CloudEvents JSON), appended to the workspace's outbox
    /// in the same step; `None` writes none.
    pub event: Option<&'a str>,
    /// The image the change stores, added to the workspace's duplicate index in the same step.
    pub index: Option<&'a DupEntry>,
    /// The image the change replaces or removes, taken out of the duplicate index.
    pub unindex: Option<&'a DupEntry>,
    /// Refuse the change ([`Swapped::Duplicate`], nothing changed) if another image of the
    /// workspace has the SHA-256 of `index`.
    pub refuse_exact: bool,
}

/// One event waiting in an outbox: its entry (in the outbox's order) and the event (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The entry's ID (a Redis stream ID, or a sequence number in the embedded store).
    pub entry: String,
    /// The event, as written by the change it announces.
    pub event: String,
}

/// The outbox of the job queue's changes (receipt status events); every other outbox is a
/// workspace's.
pub const JOBS_OUTBOX: &str = "~jobs";

/// A change of an owner's list of loose receipts (see [`listing_entry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing<'a> {
    /// The entry joins `owner`'s list.
    Add {
        /// The owner (JWT `sub`).
        owner: &'a str,
        /// The entry.
        entry: &'a str,
    },
    /// The entry leaves `owner`'s list.
    Remove {
        /// The owner (JWT `sub`).
        owner: &'a str,
        /// The entry.
        entry: &'a str,
    },
}

/// One entry of an owner's list, as [`Catalog::listings`] gives them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// Workspace.
    pub workspace: String,
    /// Owner (JWT `sub`).
    pub owner: String,
    /// The entry.
    pub entry: String,
}

/// What [`Catalog::swap_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swapped {
    /// The record changed, and the usage with it.
    Done,
    /// Another writer changed the record first; nothing changed.
    Conflict,
    /// Another image of the workspace has the same bytes and the change refuses that; nothing
    /// changed.
    Duplicate,
    /// The reservation had lapsed and its bytes no longer fit; nothing changed.
    QuotaExceeded {
        /// The limit.
        limit: u64,
        /// Committed usage plus live reservations.
        used: u64,
    },
}

/// What registering a target did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The target is new.
    Created,
    /// It was registered already, identically.
    Unchanged,
    /// It is registered already with another workspace or owner; nothing changed.
    Conflict(TargetRecord),
}

/// Per-workspace byte quotas.
#[async_trait]
pub trait Quota: Send + Sync + std::fmt::Debug {
    /// Registers a workspace with its byte limit (or re-sets the limit).
    async fn set_limit(&self, workspace: &str, limit: u64) -> Result<(), StateError>;
    /// The workspace's limit; `None` if it was never registered.
    async fn limit(&self, workspace: &str) -> Result<Option<u64>, StateError>;
    /// Bytes in use: what committed records use (reservations not included).
    async fn used(&self, workspace: &str) -> Result<u64, StateError>;
    /// Reserves `bytes` under the name `id`, atomically, unless committed usage plus the live
    /// reservations plus `bytes` would pass the limit (`default_limit` for unregistered
    /// workspaces). Calling again with the same `id` (a retry after a lost reply) is granted
    /// without a second charge. A reservation neither committed (by
    /// [`Catalog::swap_image`]) nor released lapses after `ttl` by itself.
    async fn reserve(
        &self,
        workspace: &str,
        id: &str,
        bytes: u64,
        ttl: Duration,
        default_limit: u64,
    ) -> Result<Reservation, StateError>;
    /// Drops the reservation `id` (nothing if it is gone).
    async fn release(&self, workspace: &str, id: &str) -> Result<(), StateError>;
    /// Sets the usage to `bytes` only if it is still `expected` (reconcile: a commit made
    /// since the usage was read is never overwritten); true if it changed.
    async fn replace_used(
        &self,
        workspace: &str,
        expected: u64,
        bytes: u64,
    ) -> Result<bool, StateError>;
    /// Every workspace with a limit or a usage counter.
    async fn workspaces(&self) -> Result<Vec<String>, StateError>;
    /// Checks that the backend answers.
    async fn check(&self) -> Result<(), StateError>;
}

/// Registered targets, image records, idempotency results and short-lived locks.
#[async_trait]
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// Registers a target unless it is registered already (atomically: a registered target
    /// never changes).
    async fn put_target(&self, key: &str, target: &TargetRecord) -> Result<Registered, StateError>;
    /// A registered target.
    async fn target(&self, key: &str) -> Result<Option<TargetRecord>, StateError>;
    /// Forgets a target; true if it existed.
    async fn remove_target(&self, key: &str) -> Result<bool, StateError>;
    /// The image record of a target of `workspace` (`None` if the target has none, or if its
    /// record is another workspace's: records are kept per workspace).
    async fn image(&self, workspace: &str, key: &str) -> Result<Option<ImageRecord>, StateError>;
    /// Changes the image record of a target by compare-and-set, in one atomic step: if the
    /// record still names the object `swap.expected`, it becomes `swap.image`, the reservation
    /// becomes usage (checked against the limit again if it had lapsed) and `swap.release`
    /// bytes are given back. [`Swapped::Conflict`], with nothing changed, when another writer
    /// changed the record first: a writer never overwrites what it did not read.
    async fn swap_image(&self, swap: &Swap<'_>) -> Result<Swapped, StateError>;
    /// Every image record (reconcile; a full scan).
    async fn images(&self) -> Result<Vec<ImageRecord>, StateError>;
    /// Up to `limit` entries of `owner`'s list in `workspace`, in order (newest first), after
    /// the entry `after` (from the start if `None`). O(log n + limit).
    async fn listed(
        &self,
        workspace: &str,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError>;
    /// Every entry of every list (reconcile; a full scan).
    async fn listings(&self) -> Result<Vec<Listed>, StateError>;
    /// Adds (`true`) or removes an entry outside a record change (reconcile's repairs).
    async fn set_listed(&self, listed: &Listed, present: bool) -> Result<(), StateError>;
    /// A stored idempotency result.
    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StateError>;
    /// Stores an idempotency result for `ttl`.
    async fn put_idempotency(
        &self,
        key: &str,
        record: &IdempotencyRecord,
        ttl: Duration,
    ) -> Result<(), StateError>;
    /// Takes the lock `name` for at most `ttl` if it is free; returns the holder's token.
    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, StateError>;
    /// Releases the lock if `token` still holds it.
    async fn unlock(&self, name: &str, token: &str) -> Result<(), StateError>;
    /// Stores a new upload session unless its caller already has `max_open` open (not complete,
    /// not expired) ones; false if they have, and nothing changed.
    async fn create_session(
        &self,
        session: &SessionRecord,
        max_open: usize,
    ) -> Result<bool, StateError>;
    /// The session `id` of the caller workspace `scope`.
    async fn session(&self, scope: &str, id: &str) -> Result<Option<SessionRecord>, StateError>;
    /// Replaces the session by compare-and-set: only if its stored version is still `expected`
    /// (false, and nothing changed, if it is not, or if the session is gone). A session that
    /// gets its result stops counting as open.
    async fn update_session(
        &self,
        session: &SessionRecord,
        expected: u64,
    ) -> Result<bool, StateError>;
    /// Forgets the session (nothing if it is gone).
    async fn remove_session(&self, session: &SessionRecord) -> Result<(), StateError>;
    /// Up to `limit` sessions that expired before `now_ms`, oldest first.
    async fn expired_sessions(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StateError>;
    /// Stores a new job record and queues the job, in one atomic step (with `event` appended to
    /// the outbox [`JOBS_OUTBOX`], if given).
    async fn enqueue_job(&self, job: &JobRecord, event: Option<&str>) -> Result<(), StateError>;
    /// The job `id` (`None` once it is final and its `expires_ms` has passed; a job not final
    /// never expires).
    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StateError>;
    /// Hands `worker` up to `limit` queued jobs that are due and that no worker holds: never
    /// taken, given back, or held by a worker that has not renewed its hold for `lease` (it
    /// died). The worker holds each until it renews ([`Catalog::renew_job`]) or changes the
    /// job's entry ([`Catalog::update_job`]).
    async fn take_jobs(
        &self,
        worker: &str,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<Delivery>, StateError>;
    /// Renews `worker`'s hold on a job for another `lease`; false if the job is no longer
    /// held by it (another worker took it over, or it left the queue).
    async fn renew_job(
        &self,
        delivery: &Delivery,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<bool, StateError>;
    /// Replaces the job record by compare-and-set (only if its stored version is still
    /// `expected`) and changes its queue entry as `next` says, in one atomic step (with `event`
    /// appended to the outbox [`JOBS_OUTBOX`], if given); false, and nothing changed, if the
    /// version moved or the record is gone.
    async fn update_job(
        &self,
        job: &JobRecord,
        expected: u64,
        next: JobNext<'_>,
        event: Option<&str>,
    ) -> Result<bool, StateError>;
    /// Jobs queued (held, due or waiting for a retry).
    async fn queued_jobs(&self) -> Result<u64, StateError>;
    /// Forgets up to `limit` job records whose time is up (`expires_ms` before `now_ms`);
    /// returns how many. (Redis expires them by itself.)
    async fn expire_jobs(&self, now_ms: u64, limit: usize) -> Result<usize, StateError>;
    /// Every outbox that may hold events (a scan: each replica relays the outboxes it wrote to
    /// itself; this finds what a replica that died left).
    async fn outboxes(&self) -> Result<Vec<String>, StateError>;
    /// The first `limit` events of the outbox `name`, oldest first.
    async fn outbox(&self, name: &str, limit: usize) -> Result<Vec<OutboxEntry>, StateError>;
    /// Removes delivered events from the outbox `name`.
    async fn ack_outbox(&self, name: &str, entries: &[String]) -> Result<(), StateError>;
    /// Events waiting in every outbox.
    async fn outbox_len(&self) -> Result<u64, StateError>;
    /// Images of `workspace` indexed with the SHA-256 `sha256` or sharing a quarter of the
    /// perceptual hash `phash`, the newest `per_key` of each. One found by its SHA-256 comes
    /// with its ID, the SHA-256 and its time only (all an exact match needs; its entry is not
    /// read); the others with their whole entries.
    async fn duplicate_candidates(
        &self,
        workspace: &str,
        sha256: &str,
        phash: Option<&str>,
        per_key: usize,
    ) -> Result<Vec<DupEntry>, StateError>;
    /// Sets whether `workspace` refuses uploads of bytes it already holds.
    async fn set_refuse_duplicates(&self, workspace: &str, refuse: bool) -> Result<(), StateError>;
    /// Whether `workspace` refuses uploads of bytes it already holds.
    async fn refuses_duplicates(&self, workspace: &str) -> Result<bool, StateError>;
    /// Registers a webhook, unless its workspace has `max` already (false, nothing changed).
    async fn put_webhook(&self, hook: &WebhookRecord, max: usize) -> Result<bool, StateError>;
    /// The webhooks of `workspace`, oldest first.
    async fn webhooks(&self, workspace: &str) -> Result<Vec<WebhookRecord>, StateError>;
    /// Removes a webhook with its queue and log; false if there was none.
    async fn remove_webhook(&self, workspace: &str, id: &str) -> Result<bool, StateError>;
    /// Appends deliveries to the queue of the webhook `id` of `workspace`, unless it holds
    /// `max` already; returns how many were queued (the first ones).
    async fn queue_deliveries(
        &self,
        workspace: &str,
        id: &str,
        deliveries: &[HookDelivery],
        max: usize,
    ) -> Result<usize, StateError>;
    /// The webhooks with deliveries waiting, as (workspace, ID): those queued to lately and,
    /// with `all`, every one (a scan).
    async fn hook_queues(&self, all: bool) -> Result<Vec<(String, String)>, StateError>;
    /// The oldest delivery waiting for the webhook.
    async fn delivery_head(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<HookDelivery>, StateError>;
    /// Replaces the oldest delivery of the webhook by `delivery` (the same event, after an
    /// attempt), or, if it is settled, moves it to the webhook's log (which keeps the newest
    /// `log_max`); false, and nothing changed, if the oldest is another event.
    async fn settle_delivery(
        &self,
        workspace: &str,
        id: &str,
        delivery: &HookDelivery,
        log_max: usize,
    ) -> Result<bool, StateError>;
    /// Up to `limit` deliveries of the webhook: those waiting (oldest first), then the settled
    /// ones (newest first).
    async fn deliveries(
        &self,
        workspace: &str,
        id: &str,
        limit: usize,
    ) -> Result<Vec<HookDelivery>, StateError>;
}
