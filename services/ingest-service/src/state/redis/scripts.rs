//! The Lua scripts (`scripts/*.lua`): every change that must be atomic is one script on one
//! workspace's keys (one cluster slot).

/// Helpers the scripts that need them start with (the server's clock in ms, a workspace's live
/// reservations).
const HELPERS: &str = include_str!("scripts/helpers.lua");

/// The scripts, loaded once (`EVALSHA`, falling back to `EVAL` on a server that lacks them).
#[derive(Clone)]
pub(super) struct Scripts {
    /// Reserves quota under an ID, unless it would pass the limit.
    pub reserve: redis::Script,
    /// Compare-and-set of an image record, with its quota and owner's list.
    pub swap_image: redis::Script,
    /// Compare-and-set of a usage counter (reconcile).
    pub replace_used: redis::Script,
    /// Deletes a lock only if the caller's token still holds it.
    pub unlock: redis::Script,
    /// Stores a new upload session under its caller's cap.
    pub create_session: redis::Script,
    /// Compare-and-set of an upload session.
    pub update_session: redis::Script,
    /// Stores a job record and queues the job.
    pub enqueue_job: redis::Script,
    /// Compare-and-set of a job record, with its queue entry.
    pub update_job: redis::Script,
    /// Moves delayed jobs whose time has come to the queue.
    pub promote_jobs: redis::Script,
    /// Renews a worker's hold on a queue entry.
    pub renew_job: redis::Script,
    /// Replaces or settles a webhook's oldest delivery.
    pub settle_delivery: redis::Script,
    /// Registers a webhook under its workspace's cap.
    pub put_webhook: redis::Script,
    /// Moves a counter of the earlier layout.
    pub migrate_counter: redis::Script,
    /// Moves a value of the earlier layout.
    pub migrate_value: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            reserve: with_helpers(include_str!("scripts/reserve.lua")),
            swap_image: with_helpers(include_str!("scripts/swap_image.lua")),
            replace_used: redis::Script::new(include_str!("scripts/replace_used.lua")),
            unlock: redis::Script::new(include_str!("scripts/unlock.lua")),
            create_session: with_helpers(include_str!("scripts/create_session.lua")),
            update_session: redis::Script::new(include_str!("scripts/update_session.lua")),
            enqueue_job: redis::Script::new(include_str!("scripts/enqueue_job.lua")),
            update_job: redis::Script::new(include_str!("scripts/update_job.lua")),
            promote_jobs: redis::Script::new(include_str!("scripts/promote_jobs.lua")),
            renew_job: redis::Script::new(include_str!("scripts/renew_job.lua")),
            settle_delivery: redis::Script::new(include_str!("scripts/settle_delivery.lua")),
            put_webhook: redis::Script::new(include_str!("scripts/put_webhook.lua")),
            migrate_counter: redis::Script::new(include_str!("scripts/migrate_counter.lua")),
            migrate_value: redis::Script::new(include_str!("scripts/migrate_value.lua")),
        }
    }
}

fn with_helpers(script: &str) -> redis::Script {
    redis::Script::new(&format!("{HELPERS}{script}"))
}
