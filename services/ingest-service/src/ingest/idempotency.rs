//! Idempotency keys: a key names one upload of one caller (workspace and user). The same key
//! with the same bytes and target replays the first result, charging nothing; with other bytes
//! or another target it is refused. A key whose image no longer exists starts afresh.

use super::Ingestor;
use super::plan::UploadPlan;
use super::policy::Placement;
use super::target::Kind;
use crate::error::IngestError;
use crate::state::{IdempotencyRecord, ImageRecord};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long an idempotency result is kept.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The catalog key of `key` for the caller `sub` of workspace `ws`: the parts are
/// length-prefixed before hashing, so no two (workspace, user, key) triples share a scope.
pub fn scope(ws: &str, sub: &str, key: &str) -> String {
    scope_parts(&[ws, sub, key])
}

/// The hash of length-prefixed parts: no two lists of parts (of any lengths) share it.
fn scope_parts(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What a plan's key says before its bytes are read.
#[derive(Debug)]
pub enum Prior {
    /// No key, or the key's image no longer exists: a new upload.
    Fresh,
    /// The key was used for this target: the upload replays it if the bytes match.
    Replay(Box<IdempotencyRecord>),
}

impl UploadPlan {
    /// The scope of this plan's key; `None` without a key. A caller acting for another user
    /// (an admin creating a receipt for them) has one scope per user acted for: the same key
    /// for two users is two uploads, never one replayed to the other.
    pub fn idempotency_scope(&self) -> Option<String> {
        if self.idempotency_key.is_empty() {
            return None;
        }
        let (ws, sub, key) = (&self.claims.ws, &self.claims.sub, &self.idempotency_key);
        Some(if self.owner == *sub {
            scope(ws, sub, key)
        } else {
            scope_parts(&[ws, sub, key, &self.owner])
        })
    }

    /// How the key's record names this plan's target (receipts have a new ID every time).
    pub fn idempotency_label(&self) -> String {
        match (self.target.kind, self.policy.placement) {
            // A new receipt's ID is new on every upload.
            (Kind::Receipt, Placement::Create) => Kind::Receipt.name().to_owned(),
            _ => self.target.catalog_key(),
        }
    }
}

impl Ingestor {
    /// Looks the plan's key up. A key used for another target, or (if the header carries a
    /// checksum) other bytes, is refused at once.
    pub(crate) async fn prior(&self, plan: &UploadPlan) -> Result<Prior, IngestError> {
        let Some(scope) = plan.idempotency_scope() else {
            return Ok(Prior::Fresh);
        };
        let Some(done) = self.catalog.idempotency(&scope).await? else {
            return Ok(Prior::Fresh);
        };
        if !self.still_exists(&done).await? {
            return Ok(Prior::Fresh);
        }
        if done.target != plan.idempotency_label()
            || plan
                .sha256
                .is_some_and(|sha| hex::encode(sha) != done.upload_sha256)
        {
            return Err(IngestError::IdempotencyKeyReused);
        }
        Ok(Prior::Replay(Box::new(done)))
    }

    /// True if the image a key's result names is still there (for reports, which move to a new
    /// object on every append: if the report still has an image).
    async fn still_exists(&self, done: &IdempotencyRecord) -> Result<bool, IngestError> {
        let image = &done.image;
        let catalog_key = if done.target == Kind::Receipt.name() {
            format!("{}:{}", Kind::Receipt.name(), image.image_id)
        } else {
            done.target.clone()
        };
        // Reports, and receipts appended to (their label names the receipt), move to a new
        // object on every append.
        let appends = match done.target.split_once(':') {
            Some((kind, _)) => Kind::from_name(kind).is_some_and(|kind| {
                kind == Kind::Receipt || kind.policy().placement == Placement::Append
            }),
            None => false,
        };
        Ok(
            match self.catalog.image(&image.workspace, &catalog_key).await? {
                Some(current) => appends || current.key == image.key,
                None => false,
            },
        )
    }

    /// The replayed result if `sha256` matches the key's bytes, else `IDEMPOTENCY_KEY_REUSED`.
    pub(crate) fn replay(
        done: Box<IdempotencyRecord>,
        sha256: &[u8; 32],
    ) -> Result<ImageRecord, IngestError> {
        if done.upload_sha256 == hex::encode(sha256) {
            Ok(done.image)
        } else {
            Err(IngestError::IdempotencyKeyReused)
        }
    }

    /// Keeps the result of a finished upload under its key; false if it could not be stored
    /// (the caller then keeps the key's claim).
    pub(crate) async fn remember(
        &self,
        plan: &UploadPlan,
        sha256: &[u8; 32],
        image: &ImageRecord,
    ) -> bool {
        let Some(scope) = plan.idempotency_scope() else {
            return true;
        };
        let done = IdempotencyRecord {
            upload_sha256: hex::encode(sha256),
            target: plan.idempotency_label(),
            image: image.clone(),
        };
        match self
            .catalog
            .put_idempotency(&scope, &done, IDEMPOTENCY_TTL)
            .await
        {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "idempotency result not kept; the key stays claimed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scope;

    #[test]
    fn scopes_do_not_collide_when_parts_shift_between_user_and_key() {
        assert_ne!(scope("w", "u1:k1", "k2"), scope("w", "u1", "k1:k2"));
        assert_ne!(scope("w1", "u", "k"), scope("w2", "u", "k"));
        assert_ne!(scope("w", "u", "k"), scope("wu", "", "k"));
        assert_eq!(scope("w", "u", "k"), scope("w", "u", "k"));
    }
}
