//! Forwarding a pass-through upload to storage while it is received: an upload kept as sent (a
//! PDF, JPEG, PNG or WebP whose declared size is known and at least
//! `limits.upload.forward_from_bytes`, 256 KiB by default: below that the second transfer costs
//! less than a streamed request) is written to its object key as its chunks arrive ([`ObjectStore::put_streamed`]), so its bytes
//! reach storage with their last chunk instead of one whole transfer later. The checks run as
//! before, alongside the end of the write, and only an upload that passes them is committed:
//!
//! - the write is only completed once the whole upload arrived with its declared size and
//!   SHA-256 ([`Streamed::End`]); an upload that fails before that (refused, reset, timed out)
//!   drops its sender and storage keeps nothing;
//! - a written object that is not committed (the checks refused the file, it was converted,
//!   the commit failed) is deleted ([`Written::discard`]); if the service dies first, it is an
//!   orphan no record names, which the janitor removes;
//! - a write that fails or falls behind changes nothing but speed: the bytes are still in memory
//!   and are stored by a whole PUT, as without forwarding.

use super::Ingestor;
use super::plan::UploadPlan;
use super::policy::Conversion;
use super::target::object_key;
use crate::storage::{ObjectStore, StorageError, Streamed};
use bytes::Bytes;
use imaging_pipeline::MediaType;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks queued for storage, at most, before receiving waits for it.
const QUEUED_CHUNKS: usize = 2;

/// The most memory the chunks queued for storage hold (reserved in the memory budget): the
/// queue, a chunk in hand on each side and the write's frame being filled.
pub(super) fn queued_bytes(limits: &crate::configuration::LimitSettings) -> u64 {
    (QUEUED_CHUNKS as u64 + 2) * limits.upload.max_chunk_bytes as u64 + 256 * 1024
}

/// An upload being forwarded to storage. Dropped before [`Forward::written`], it cuts the write
/// short, or deletes what it wrote.
#[derive(Debug)]
pub struct Forward {
    key: String,
    sender: Option<mpsc::Sender<Streamed>>,
    /// True once every byte was passed on and [`Streamed::End`] sent.
    ended: bool,
    write: Option<tokio::task::JoinHandle<Result<(), StorageError>>>,
    store: Arc<dyn ObjectStore>,
    /// How long storage may keep a chunk waiting before forwarding is given up.
    stall: Duration,
}

impl Ingestor {
    /// Starts forwarding the upload `plan` describes, if it is one to forward.
    pub(super) fn forward(&self, plan: &UploadPlan) -> Option<Forward> {
        let kept_as_sent = plan.policy.conversion == Conversion::Keep
            && matches!(
                plan.media,
                MediaType::Pdf | MediaType::Jpeg | MediaType::Png | MediaType::Webp
            );
        let from = self.limits.upload.forward_from_bytes;
        if !kept_as_sent
            || from == 0
            || plan.declared_size < from
            || plan.declared_size > plan.max_bytes
        {
            return None;
        }
        let key = object_key(
            &plan.workspace,
            plan.target.kind,
            &plan.target.id,
            plan.media,
        );
        let (sender, body) = mpsc::channel(QUEUED_CHUNKS);
        let store = self.objects.clone();
        // The upload's own deadline, and time to finish the write after its last byte.
        let within = Duration::from_secs(self.limits.upload.deadline_seconds + 30);
        let (size, mime, target) = (plan.declared_size, plan.media.mime(), key.clone());
        let write =
            tokio::spawn(
                async move { store.put_streamed(&target, size, mime, body, within).await },
            );
        Some(Forward {
            key,
            sender: Some(sender),
            ended: false,
            write: Some(write),
            store: self.objects.clone(),
            stall: Duration::from_secs(self.limits.upload.idle_seconds),
        })
    }
}

impl Forward {
    /// Passes the next chunk on. If storage has stopped taking chunks (its write failed, or
    /// kept one waiting too long) forwarding ends here, and the upload goes on without it.
    pub(super) async fn send(&mut self, chunk: Bytes) {
        let Some(sender) = &self.sender else { return };
        let sent = tokio::time::timeout(self.stall, sender.send(Streamed::Data(chunk))).await;
        if !matches!(sent, Ok(Ok(()))) {
            // Dropping the sender cuts the write short: storage keeps nothing.
            self.sender = None;
        }
    }

    /// Says the upload arrived whole and checked: the write may complete.
    pub(super) async fn end(&mut self) {
        let Some(sender) = self.sender.take() else {
            return;
        };
        self.ended = matches!(
            tokio::time::timeout(self.stall, sender.send(Streamed::End)).await,
            Ok(Ok(()))
        );
    }

    /// Waits for the write: the object written, or `None` if forwarding failed (storage kept
    /// nothing, or an orphan the janitor removes).
    pub(super) async fn written(mut self) -> Option<Written> {
        if !self.ended {
            return None;
        }
        let write = self.write.take()?;
        let key = std::mem::take(&mut self.key);
        match write.await {
            Ok(Ok(())) => Some(Written {
                key,
                store: self.store.clone(),
                state: std::sync::Mutex::new(State::Pending),
            }),
            Ok(Err(err)) => {
                tracing::warn!(%key, error = %err, "forwarded write failed; the upload is stored whole");
                None
            }
            Err(err) => {
                tracing::warn!(%key, error = %err, "forwarded write task failed");
                None
            }
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        // Without End the write fails; after it, what it wrote is deleted.
        self.sender = None;
        let Some(write) = self.write.take() else {
            return;
        };
        if !self.ended {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, key) = (self.store.clone(), std::mem::take(&mut self.key));
            runtime.spawn(async move {
                if let Ok(Ok(())) = write.await {
                    delete_uncommitted(store.as_ref(), &key).await;
                }
            });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Kept,
    Discarded,
}

/// An object written by forwarding, not yet named by a record: deleted unless
/// [`Written::keep`] is called (by the commit that names it, or that may have).
#[derive(Debug)]
pub(super) struct Written {
    key: String,
    store: Arc<dyn ObjectStore>,
    state: std::sync::Mutex<State>,
}

impl Written {
    /// Its key.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    fn set(&self, to: State) -> State {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let was = *state;
        if was == State::Pending {
            *state = to;
        }
        was
    }

    /// A record names the object (or may: the commit's outcome is unknown): it stays.
    pub(super) fn keep(&self) {
        self.set(State::Kept);
    }

    /// Deletes the object unless it was kept, waiting for the delete.
    pub(super) async fn discard(&self) {
        if self.set(State::Discarded) == State::Pending {
            delete_uncommitted(self.store.as_ref(), &self.key).await;
        }
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if self.set(State::Discarded) != State::Pending {
            return;
        }
        // Dropped on a path that neither kept nor discarded it: deleted in the background.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, key) = (self.store.clone(), self.key.clone());
            runtime.spawn(async move { delete_uncommitted(store.as_ref(), &key).await });
        }
    }
}

/// Deletes an object no record names; one that cannot be deleted is left to the janitor.
async fn delete_uncommitted(store: &dyn ObjectStore, key: &str) {
    if let Err(err) = store.delete(key).await {
        tracing::error!(%key, error = %err, "an uncommitted object was not deleted; it is an orphan");
    }
}
