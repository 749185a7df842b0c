//! Reading, listing and deleting images (every one authorized from the record itself), and a
//! workspace's usage.

use super::lock::with_lock;
use super::{
    ImageView, Ingestor, MAX_ATTEMPTS, TargetRef, UsageView, authorize_record, not_found, target,
};
use crate::auth::{self, Claims};
use crate::error::IngestError;
use crate::events::{Change, image_event};
use crate::state::{Listing, Swap, Swapped};

/// Who asks for a change to a record: the caller, and the user they act for, if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller<'a> {
    pub claims: &'a Claims,
    pub acting_for: Option<&'a str>,
}

/// The user a call on `target` acts for: `None` when the caller acts for themselves;
/// `PERMISSION_DENIED` for a caller who may not act for `requested` (checked before anything
/// is looked up); only receipts have owners to act for. The record found must then be theirs,
/// else it is not found: one call answers what a client would otherwise ask in three.
pub(super) fn acting_for_owner(
    claims: &Claims,
    target: &TargetRef,
    requested: &str,
) -> Result<Option<String>, IngestError> {
    if requested.is_empty() {
        return Ok(None);
    }
    if target.kind != super::Kind::Receipt {
        return Err(IngestError::invalid(
            "owner",
            "an owner is given for receipts only",
        ));
    }
    auth::acting_owner(claims, requested).map(Some)
}

/// Receipts per page of a listing when the caller names no size.
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// The most receipts per page of a listing.
pub const MAX_PAGE_SIZE: usize = 100;

impl Ingestor {
    /// The target's current image with a fresh URL; with `acting_for`, only if it is that
    /// user's (see [`acting_for_owner`]).
    pub async fn get_image(
        &self,
        claims: &Claims,
        target: &TargetRef,
        acting_for: &str,
    ) -> Result<ImageView, IngestError> {
        target.validate(false)?;
        let acting_for = acting_for_owner(claims, target, acting_for)?;
        let Some(owner) = self.authorize(claims, target).await? else {
            return Err(not_found(target.kind));
        };
        let record = self
            .catalog
            .image(&owner.workspace, &target.catalog_key())
            .await?
            .ok_or(IngestError::ImageNotFound)?;
        // The image is its record's owner's, whoever the target names now.
        authorize_record(claims, target.kind, &record)?;
        if acting_for.is_some_and(|owner| owner != record.owner) {
            return Err(IngestError::ImageNotFound);
        }
        let url = self.objects.url(&record.key, self.url_ttl).await?;
        Ok(ImageView {
            record,
            url,
            url_ttl: self.url_ttl,
        })
    }

    /// Deletes the target's image and releases its bytes; returns the bytes released. With
    /// `acting_for`, only if it is that user's (see [`acting_for_owner`]).
    pub async fn delete_image(
        &self,
        claims: &Claims,
        target: &TargetRef,
        acting_for: &str,
    ) -> Result<u64, IngestError> {
        target.validate(false)?;
        let acting_for = acting_for_owner(claims, target, acting_for)?;
        let Some(owner) = self.authorize(claims, target).await? else {
            return Err(not_found(target.kind));
        };
        let caller = Caller {
            claims,
            acting_for: acting_for.as_deref(),
        };
        self.remove_image(&owner.workspace, target, Some(caller))
            .await?
            .ok_or(IngestError::ImageNotFound)
    }

    /// Removes the image record of `target` in `workspace` (checked against `caller` if given)
    /// and releases its bytes, then deletes its object; the bytes released, `None` if there was
    /// no image.
    pub(super) async fn remove_image(
        &self,
        workspace: &str,
        target: &TargetRef,
        caller: Option<Caller<'_>>,
    ) -> Result<Option<u64>, IngestError> {
        let catalog_key = target.catalog_key();
        let lock = format!("target:{catalog_key}");
        with_lock(&self.catalog, lock, self.locks, async {
            // The record goes first, by compare-and-set with its bytes given back in the same
            // step; an object left behind by a failed delete is only an orphan.
            for _ in 0..MAX_ATTEMPTS {
                let Some(record) = self.catalog.image(workspace, &catalog_key).await? else {
                    return Ok(None);
                };
                if let Some(caller) = caller {
                    authorize_record(caller.claims, target.kind, &record)?;
                    if caller.acting_for.is_some_and(|owner| owner != record.owner) {
                        return Err(IngestError::ImageNotFound);
                    }
                }
                let event = self.event(|| {
                    image_event(
                        Change::Deleted,
                        target.kind.name(),
                        &target.id,
                        &record,
                        &[],
                    )
                });
                let removed = self
                    .catalog
                    .swap_image(&Swap {
                        key: &catalog_key,
                        expected: Some(&record.key),
                        image: None,
                        workspace: &record.workspace,
                        release: record.size,
                        reservation: None,
                        default_limit: self.limits.quota.default_bytes,
                        listing: record.listed.as_deref().map(|entry| Listing::Remove {
                            owner: &record.owner,
                            entry,
                        }),
                        event: event.as_deref(),
                        index: None,
                        unindex: Some(&super::duplicates::entry_of(&record)),
                        refuse_exact: false,
                    })
                    .await?;
                if removed == Swapped::Done {
                    if event.is_some() {
                        self.events.wrote(&record.workspace);
                    }
                    if let Err(err) = self.objects.delete(&record.key).await {
                        tracing::error!(key = %record.key, error = %err, "deleted image's object not removed; it is an orphan");
                    }
                    return Ok(Some(record.size));
                }
            }
            Err(IngestError::Busy)
        })
        .await
    }

    /// A page of `owner`'s loose receipts in the caller's workspace (the caller's own if
    /// `owner` is empty), newest first: their IDs and the token of the next page (`None` on the
    /// last). `page_size` 0 is 25; more than 100 is 100.
    pub async fn list_receipts(
        &self,
        claims: &Claims,
        owner: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<(String, u64)>, Option<String>), IngestError> {
        if !target::valid_id(&claims.ws) {
            return Err(IngestError::InvalidId("token ws"));
        }
        let owner = auth::acting_owner(claims, owner)?;
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size < 0 => {
                return Err(IngestError::invalid(
                    "page_size",
                    "page_size must not be negative",
                ));
            }
            size => usize::try_from(size)
                .unwrap_or(MAX_PAGE_SIZE)
                .min(MAX_PAGE_SIZE),
        };
        let after = match page_token {
            "" => None,
            token if token.len() <= 200 && crate::state::listing_image(token).is_some() => {
                Some(token)
            }
            _ => {
                return Err(IngestError::invalid(
                    "page_token",
                    "not a page token of this list",
                ));
            }
        };
        let mut entries = self
            .catalog
            .listed(&claims.ws, &owner, after, size + 1)
            .await?;
        let next = if entries.len() > size {
            entries.truncate(size);
            entries.last().cloned()
        } else {
            None
        };
        let ids = entries
            .iter()
            .filter_map(|entry| {
                let image = crate::state::listing_image(entry)?;
                Some((image.to_owned(), crate::state::listing_time(entry)?))
            })
            .collect();
        Ok((ids, next))
    }

    /// A workspace's quota limit and usage.
    pub async fn usage(&self, claims: &Claims, workspace: &str) -> Result<UsageView, IngestError> {
        if !target::valid_id(workspace) {
            return Err(IngestError::InvalidId("workspace_id"));
        }
        auth::can_read_usage(claims, workspace)?;
        let limit = self
            .quota
            .limit(workspace)
            .await?
            .ok_or(IngestError::TargetNotFound("workspace"))?;
        let used = self.quota.used(workspace).await?;
        Ok(UsageView { limit, used })
    }
}
