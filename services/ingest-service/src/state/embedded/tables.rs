//! The embedded database's tables.

use super::{EmbeddedState, failed};
use crate::state::StateError;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

/// Workspace -> byte limit.
pub(super) const LIMITS: TableDefinition<&str, u64> = TableDefinition::new("limits");
/// Workspace -> bytes used.
pub(super) const USED: TableDefinition<&str, u64> = TableDefinition::new("used");
/// Target key -> JSON `TargetRecord`.
pub(super) const TARGETS: TableDefinition<&str, &str> = TableDefinition::new("targets");
/// Target key -> JSON `ImageRecord`.
pub(super) const IMAGES: TableDefinition<&str, &str> = TableDefinition::new("images");
/// Idempotency scope -> (expiry in Unix seconds, JSON `IdempotencyRecord`).
pub(super) const IDEMPOTENCY: TableDefinition<&str, (u64, &str)> =
    TableDefinition::new("idempotency");
/// (expiry in Unix seconds, idempotency scope): the results in the order they expire, so that
/// expired ones are removed a few at a time without a scan.
pub(super) const IDEMPOTENCY_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// Expired idempotency results removed by each new one (more than one: the table shrinks back
/// after a burst).
pub(super) const IDEMPOTENCY_SWEEP: usize = 16;
/// `{workspace}/{hex(owner)}/{entry}`: the owners' lists of loose receipts, in byte order
/// (newest first within an owner, see `listing_entry`).
pub(super) const OWNER_LISTS: TableDefinition<&str, ()> = TableDefinition::new("owner_lists");

/// The key prefix of `owner`'s list in `workspace`; workspace IDs have no `/`, hex has none.
pub(super) fn list_prefix(workspace: &str, owner: &str) -> String {
    format!("{workspace}/{}/", hex::encode(owner))
}

/// `{workspace}/{id}` -> (bytes, expiry in Unix ms) of a live quota reservation.
pub(super) const RESERVATIONS: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("reservations");

/// `{scope}/{id}` -> JSON `SessionRecord`: resumable upload sessions.
pub(super) const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
/// `{scope}/{hex(caller)}/{id}` -> expiry (ms): the sessions a caller has open, for the cap.
pub(super) const SESSIONS_OPEN: TableDefinition<&str, u64> = TableDefinition::new("sessions_open");
/// (expiry in ms, `{scope}/{id}`): sessions in the order they expire, for the janitor.
pub(super) const SESSIONS_EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("sessions_expiry");

/// Job ID -> JSON `JobRecord`: receipts accepted for asynchronous processing.
pub(super) const JOBS: TableDefinition<&str, &str> = TableDefinition::new("jobs");
/// Job ID -> (when it may next be taken, ms; the token of the worker holding it, or empty): the
/// queue.
pub(super) const JOB_QUEUE: TableDefinition<&str, (u64, &str)> = TableDefinition::new("job_queue");
/// (when it may next be taken, ms; job ID): the queue in the order its jobs fall due (a held
/// job falls due again when its holder's lease runs out).
pub(super) const JOB_DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("job_due");
/// (when the record is forgotten, ms; job ID).
pub(super) const JOB_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("job_expiry");

/// (outbox name, sequence number) -> event JSON: events not yet delivered, in the order their
/// changes were made (a workspace's outbox, or `~jobs`).
pub(super) const OUTBOX: TableDefinition<(&str, u64), &str> = TableDefinition::new("outbox");
/// `next` -> the next outbox sequence number.
pub(super) const OUTBOX_SEQ: TableDefinition<&str, u64> = TableDefinition::new("outbox_seq");

/// `{workspace}/{id}` -> JSON `WebhookRecord`.
pub(super) const HOOKS: TableDefinition<&str, &str> = TableDefinition::new("hooks");
/// (`{workspace}/{id}`, sequence number) -> JSON `HookDelivery`: a webhook's deliveries waiting,
/// oldest first.
pub(super) const HOOK_QUEUE: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("hook_queue");
/// (`{workspace}/{id}`, sequence number) -> JSON `HookDelivery`: its settled deliveries (the
/// newest last), capped.
pub(super) const HOOK_LOG: TableDefinition<(&str, u64), &str> = TableDefinition::new("hook_log");

/// (`{workspace}/sha:{sha256}` or `{workspace}/q:{quarter}`, image ID) -> when it was indexed
/// (ms): the duplicate index.
pub(super) const DUP_SETS: TableDefinition<(&str, &str), u64> = TableDefinition::new("dup_sets");
/// `{workspace}/{image ID}` -> JSON `DupEntry`.
pub(super) const DUP_ENTRIES: TableDefinition<&str, &str> = TableDefinition::new("dup_entries");
/// Workspaces that refuse uploads of bytes they hold.
pub(super) const REFUSE_DUPS: TableDefinition<&str, ()> = TableDefinition::new("refuse_dups");

impl EmbeddedState {
    pub(super) fn create_tables(&self) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(failed)?;
        txn.open_table(LIMITS).map_err(failed)?;
        txn.open_table(USED).map_err(failed)?;
        txn.open_table(TARGETS).map_err(failed)?;
        txn.open_table(IMAGES).map_err(failed)?;
        txn.open_table(RESERVATIONS).map_err(failed)?;
        txn.open_table(OWNER_LISTS).map_err(failed)?;
        txn.open_table(SESSIONS).map_err(failed)?;
        txn.open_table(SESSIONS_OPEN).map_err(failed)?;
        txn.open_table(SESSIONS_EXPIRY).map_err(failed)?;
        txn.open_table(JOBS).map_err(failed)?;
        txn.open_table(JOB_QUEUE).map_err(failed)?;
        txn.open_table(JOB_DUE).map_err(failed)?;
        txn.open_table(JOB_EXPIRY).map_err(failed)?;
        txn.open_table(OUTBOX).map_err(failed)?;
        txn.open_table(OUTBOX_SEQ).map_err(failed)?;
        txn.open_table(HOOKS).map_err(failed)?;
        txn.open_table(DUP_SETS).map_err(failed)?;
        txn.open_table(DUP_ENTRIES).map_err(failed)?;
        txn.open_table(REFUSE_DUPS).map_err(failed)?;
        txn.open_table(HOOK_QUEUE).map_err(failed)?;
        txn.open_table(HOOK_LOG).map_err(failed)?;
        {
            // Results stored before the expiry index existed are indexed once.
            let results = txn.open_table(IDEMPOTENCY).map_err(failed)?;
            let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(failed)?;
            if expiry.is_empty().map_err(failed)? {
                for entry in results.iter().map_err(failed)? {
                    let (scope, value) = entry.map_err(failed)?;
                    let (expires, _) = value.value();
                    expiry
                        .insert((expires, scope.value()), ())
                        .map_err(failed)?;
                }
            }
        }
        txn.commit().map_err(failed)
    }
}

pub(super) fn counter(
    table: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<Option<u64>, StateError> {
    Ok(table.get(key).map_err(failed)?.map(|value| value.value()))
}
