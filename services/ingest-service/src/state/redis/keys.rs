//! Key layout (`imaging:` is the configurable prefix). Everything a script touches is one
//! workspace's and carries the workspace as its hash tag, so a script's keys share a cluster
//! slot; the other keys are read and written one at a time:
//!
//! | key | holds |
//! |---|---|
//! | `imaging:{ws}:limit` | the workspace's byte limit |
//! | `imaging:{ws}:used` | bytes its committed records use |
//! | `imaging:{ws}:reservations` | hash: reservation ID -> `bytes:expiry_ms` |
//! | `imaging:{ws}:image:<target>` | JSON image record of a target of the workspace |
//! | `imaging:{ws}:owner:<hex(sub)>` | sorted set (all scores 0, byte order): a user's loose receipts, newest first |
//! | `imaging:target:<target>` | JSON target registration (workspace, owner) |
//! | `imaging:idem:<scope>` | JSON idempotency result, with a TTL |
//! | `imaging:lock:<name>` | lock token, with a TTL |
//! | `imaging:{ws}:upload:<id>` | JSON upload session started by a caller of the workspace |
//! | `imaging:{ws}:uploads:<hex(sub)>` | sorted set: a caller's open sessions, scored by expiry (ms) |
//! | `imaging:uploads:expiry` | sorted set: `{ws}/{id}` of every session, scored by expiry (ms) |
//! | `imaging:{~jobs}:job:<id>` | JSON job record (an asynchronously processed receipt), expiring when its status is no longer kept |
//! | `imaging:{~jobs}:queue` | stream of queued jobs (field `job`), consumer group `workers` |
//! | `imaging:{~jobs}:delayed` | sorted set: jobs waiting for a retry, scored by when they are due (ms) |
//! | `imaging:{ws}:outbox` | stream (field `event`): events of the workspace's changes not yet delivered, written by the change's script |
//! | `imaging:{~jobs}:outbox` | the same for the job queue's changes (receipt status events) |
//! | `imaging:{ws}:dup:sha:<sha256>` | sorted set: images of the workspace with these bytes, scored by when they were indexed |
//! | `imaging:{ws}:dup:q:<n><hex4>` | sorted set: images whose perceptual hash has `hex4` as its quarter `n` |
//! | `imaging:{ws}:dup:img:<image>` | JSON duplicate-index entry of an image (hash, signature) |
//! | `imaging:{ws}:refuse_dups` | `1` if the workspace refuses uploads of bytes it holds |
//! | `imaging:{ws}:hooks` | hash: webhook ID -> JSON webhook record |
//! | `imaging:{ws}:hookq:<id>` | list: the webhook's deliveries waiting, oldest first |
//! | `imaging:{ws}:hooklog:<id>` | list: its settled deliveries, newest first (capped) |
//! | `imaging:hookqueues` | set: `{ws}/{id}` of webhooks queued to lately (a hint; the dispatcher also scans) |
//! | `imaging:workspaces` | set of registered workspaces (reconcile) |
//! | `imaging:layout:version` | `2` once data of earlier versions has been moved |
//!
//! Data written by versions before this layout (`imaging:used:<ws>`, `imaging:image:<target>`,
//! ...) is moved by [`RedisState::migrate_layout`], which the service runs on start.

use super::RedisState;

/// The key layout this version writes, recorded in `imaging:layout:version` once data of
/// earlier versions has been moved.
pub(super) const LAYOUT: &str = "2";

/// The hash tag of the job queue's keys.
const JOBS_TAG: &str = "~jobs";

impl RedisState {
    /// A key of no workspace (read and written alone).
    pub(super) fn key(&self, space: &str, name: &str) -> String {
        format!("{}{space}:{name}", self.prefix)
    }

    /// A key of `workspace`, in the workspace's cluster slot.
    pub(super) fn ws_key(&self, workspace: &str, name: &str) -> String {
        format!("{}{{{workspace}}}:{name}", self.prefix)
    }

    pub(super) fn image_key(&self, workspace: &str, target: &str) -> String {
        self.ws_key(workspace, &format!("image:{target}"))
    }

    /// The list of `owner`'s loose receipts in `workspace`.
    pub(super) fn owner_key(&self, workspace: &str, owner: &str) -> String {
        self.ws_key(workspace, &format!("owner:{}", hex::encode(owner)))
    }

    /// An upload session of a caller of `scope`.
    pub(super) fn session_key(&self, scope: &str, id: &str) -> String {
        self.ws_key(scope, &format!("upload:{id}"))
    }

    /// A caller's open sessions.
    pub(super) fn open_sessions_key(&self, scope: &str, caller: &str) -> String {
        self.ws_key(scope, &format!("uploads:{}", hex::encode(caller)))
    }

    /// Every session by expiry.
    pub(super) fn session_expiry_key(&self) -> String {
        self.key("uploads", "expiry")
    }

    /// A job record; every key of the job queue shares one cluster slot (`~` is in no
    /// workspace ID), so each of its scripts runs on one node.
    pub(super) fn job_key(&self, id: &str) -> String {
        self.ws_key(JOBS_TAG, &format!("job:{id}"))
    }

    /// The queue stream.
    pub(super) fn job_queue_key(&self) -> String {
        self.ws_key(JOBS_TAG, "queue")
    }

    /// Jobs waiting for a retry.
    pub(super) fn job_delayed_key(&self) -> String {
        self.ws_key(JOBS_TAG, "delayed")
    }

    /// The outbox `name` (a workspace, or [`crate::state::JOBS_OUTBOX`]), in its slot.
    pub(super) fn outbox_key(&self, name: &str) -> String {
        self.ws_key(name, "outbox")
    }

    /// A key of the workspace's duplicate index.
    pub(super) fn dup_key(&self, workspace: &str, name: &str) -> String {
        self.ws_key(workspace, &format!("dup:{name}"))
    }

    /// The webhooks of a workspace.
    pub(super) fn hooks_key(&self, workspace: &str) -> String {
        self.ws_key(workspace, "hooks")
    }

    /// A webhook's deliveries waiting.
    pub(super) fn hook_queue_key(&self, workspace: &str, id: &str) -> String {
        self.ws_key(workspace, &format!("hookq:{id}"))
    }

    /// A webhook's settled deliveries.
    pub(super) fn hook_log_key(&self, workspace: &str, id: &str) -> String {
        self.ws_key(workspace, &format!("hooklog:{id}"))
    }

    /// Webhooks queued to lately.
    pub(super) fn hook_hint_key(&self) -> String {
        format!("{}hookqueues", self.prefix)
    }

    pub(super) fn workspaces_key(&self) -> String {
        format!("{}workspaces", self.prefix)
    }
}
