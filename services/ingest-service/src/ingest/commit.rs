//! The commit protocol: quota reserved for the growth, the object written under a new key, the
//! record swapped in by compare-and-set (charging the reservation and giving back what the
//! previous object used, in one atomic step), the previous object deleted. Any failure before
//! the swap undoes the reservation and the object ([`super::guard::IngestGuard`]); a swap whose
//! reply was lost is read back before anything is undone.

use super::Ingestor;
use super::guard::IngestGuard;
use super::plan::UploadPlan;
use super::process::{Body, Content};
use super::target::{Kind, object_key};
use crate::error::IngestError;
use crate::events::{Change, image_event};
use crate::state::{ImageRecord, Listing, Reservation, Swap, Swapped, listing_entry, now_millis};
use crate::storage::BodyDigest;

impl Ingestor {
    /// Reserves quota for the growth, writes the object under a new key, then commits the
    /// record by compare-and-set against `previous` (what the caller read), giving back in the
    /// same step what the previous object used beyond the new one; then deletes the previous
    /// object. `None` if another writer changed the record first: this writer's object and
    /// reservation are undone and nothing else changed. Any failure undoes them too.
    pub(super) async fn commit(
        &self,
        plan: &UploadPlan,
        content: Content,
        previous: Option<ImageRecord>,
    ) -> Result<Option<ImageRecord>, IngestError> {
        // A registered target removed (or registered again for someone else) while this upload
        // ran takes no image: removal took the target's lock, so this read sees it.
        if plan.target.kind != Kind::Receipt {
            let current = self.catalog.target(&plan.target.catalog_key()).await?;
            if current.is_none_or(|t| t.workspace != plan.workspace || t.owner != plan.owner) {
                return Err(IngestError::TargetNotFound("target"));
            }
        }
        let size = content.size;
        let old = previous.as_ref().map_or(0, |p| p.size);
        let grow = size.saturating_sub(old);
        let reservation = if grow > 0 {
            Some(self.reserve_quota(plan, grow).await?)
        } else {
            None
        };
        let mut guard = IngestGuard::new(
            self.quota.clone(),
            self.objects.clone(),
            &plan.workspace,
            reservation.clone(),
        );
        // An object written as it arrived already has its key; it is not the guard's to delete
        // (a commit that loses a race is tried again with it), but kept once a record names it.
        let written = match &content.body {
            Body::Written(written) => Some(written.clone()),
            _ => None,
        };
        let key = match &written {
            Some(written) => written.key().to_owned(),
            None => object_key(
                &plan.workspace,
                plan.target.kind,
                &plan.target.id,
                content.media,
            ),
        };
        // A new loose receipt joins its owner's list in the same step as its record; a receipt
        // appended to keeps its entry.
        let listed = match (&previous, plan.target.kind) {
            (Some(previous), _) => previous.listed.clone(),
            (None, Kind::Receipt) => Some(listing_entry(now_millis(), &plan.target.id)),
            (None, _) => None,
        };
        let listing = match (&previous, &listed) {
            (None, Some(entry)) => Some(Listing::Add {
                owner: &plan.owner,
                entry,
            }),
            _ => None,
        };
        // Every image but a report is indexed for duplicates (an appended one leaves the index:
        // its bytes are no longer what was uploaded).
        let sha_hex = hex::encode(content.sha256);
        let indexed =
            plan.target.kind != Kind::Report && !matches!(content.body, Body::Appended { .. });
        let entry = indexed.then(|| {
            super::duplicates::entry_for(&plan.target.id, &sha_hex, content.fingerprint.as_ref())
        });
        let unindex = previous.as_ref().map(super::duplicates::entry_of);
        let (duplicates, refuse_exact) = match &entry {
            Some(entry) => {
                let duplicates = self.find_duplicates(&plan.workspace, entry).await?;
                let refuse = self.catalog.refuses_duplicates(&plan.workspace).await?;
                if refuse && let Some(exact) = duplicates.iter().find(|d| d.match_kind == "exact") {
                    return Err(IngestError::DuplicateImage {
                        image_id: exact.image_id.clone(),
                    });
                }
                (duplicates, refuse)
            }
            None => (Vec::new(), false),
        };
        let record = ImageRecord {
            image_id: plan.target.id.clone(),
            key: key.clone(),
            workspace: plan.workspace.clone(),
            owner: plan.owner.clone(),
            content_type: content.media.mime().to_owned(),
            size,
            width: content.width,
            height: content.height,
            page_count: content.pages,
            sha256: sha_hex,
            report: content.report,
            listed: listed.clone(),
            phash: entry.as_ref().and_then(|entry| entry.phash.clone()),
            duplicates,
        };
        let change = match (&previous, &content.body) {
            (None, _) => Change::Stored,
            (Some(_), Body::Appended { .. }) => Change::Appended,
            (Some(_), Body::Whole(..) | Body::Written(_)) => Change::Replaced,
        };
        let put = match content.body {
            Body::Whole(bytes, crc32c) => {
                let digest = BodyDigest {
                    sha256: content.sha256,
                    crc32c,
                };
                self.objects
                    .put(&key, bytes, &digest, content.media.mime())
                    .await
            }
            Body::Appended {
                base,
                base_len,
                tail,
            } => {
                self.objects
                    .put_appended(&key, &base, base_len, tail, content.media.mime())
                    .await
            }
            Body::Written(_) => Ok(()),
        };
        if let Err(err) = put {
            guard.rollback().await;
            return Err(err.into());
        }
        if written.is_none() {
            guard.wrote(&key);
        }
        let keep = || {
            if let Some(written) = &written {
                written.keep();
            }
        };
        // The event's time is the commit's, as near as can be: taken once the bytes are stored.
        let event = self.event(|| {
            image_event(
                change,
                plan.target.kind.name(),
                &plan.target.id,
                &record,
                &record.duplicates,
            )
        });
        let swapped = self
            .catalog
            .swap_image(&Swap {
                key: &plan.target.catalog_key(),
                expected: previous.as_ref().map(|p| p.key.as_str()),
                image: Some(&record),
                workspace: &plan.workspace,
                release: old.saturating_sub(size),
                reservation: reservation.as_deref().map(|id| (id, grow)),
                default_limit: self.limits.quota.default_bytes,
                listing,
                event: event.as_deref(),
                index: entry.as_ref(),
                unindex: unindex.as_ref(),
                refuse_exact,
            })
            .await;
        match swapped {
            Ok(Swapped::Done) => {
                keep();
                guard.disarm();
            }
            Ok(Swapped::Conflict) => {
                guard.rollback().await;
                return Ok(None);
            }
            Ok(Swapped::Duplicate) => {
                // Stored meanwhile by another upload: found again to name it.
                guard.rollback().await;
                let image_id = match &entry {
                    Some(entry) => self
                        .find_duplicates(&plan.workspace, entry)
                        .await?
                        .into_iter()
                        .find(|d| d.match_kind == "exact")
                        .map(|d| d.image_id),
                    None => None,
                };
                return Err(IngestError::DuplicateImage {
                    image_id: image_id.unwrap_or_default(),
                });
            }
            Ok(Swapped::QuotaExceeded { limit, used }) => {
                guard.rollback().await;
                return Err(IngestError::QuotaExceeded {
                    workspace: plan.workspace.clone(),
                    limit,
                    used,
                    requested: grow,
                });
            }
            Err(err) => {
                // The swap may have happened with its reply lost: find out before undoing, and
                // never delete an object a record may point to.
                match self
                    .catalog
                    .image(&plan.workspace, &plan.target.catalog_key())
                    .await
                {
                    Ok(Some(current)) if current.key == key => {
                        keep();
                        guard.disarm();
                    }
                    Ok(_) => {
                        guard.rollback().await;
                        return Err(err.into());
                    }
                    Err(_) => {
                        keep();
                        guard.abandon();
                        return Err(err.into());
                    }
                }
            }
        }
        if event.is_some() {
            self.events.wrote(&plan.workspace);
        }
        self.metrics.bytes_stored.add(
            size,
            &[opentelemetry::KeyValue::new(
                "kind",
                plan.target.kind.name(),
            )],
        );
        if let Some(previous) = previous
            && let Err(err) = self.objects.delete(&previous.key).await
        {
            tracing::error!(key = %previous.key, error = %err, "replaced object not deleted; it is an orphan");
        }
        Ok(Some(record))
    }

    /// Reserves `bytes` for the plan under a new reservation ID; a reply lost to a transient
    /// failure is retried once with the same ID, which cannot charge twice.
    async fn reserve_quota(&self, plan: &UploadPlan, bytes: u64) -> Result<String, IngestError> {
        // A session's reservation is taken over while it is live and large enough (granted again,
        // uncharged); otherwise it is given back and the growth reserved anew, under the limit.
        let id = match &plan.reservation {
            Some((held, size)) if bytes <= *size => held.clone(),
            Some((held, _)) => {
                self.quota.release(&plan.workspace, held).await?;
                uuid::Uuid::new_v4().simple().to_string()
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        let ttl = std::time::Duration::from_secs(self.limits.quota.reservation_ttl_seconds);
        let default = self.limits.quota.default_bytes;
        let mut reserved = self
            .quota
            .reserve(&plan.workspace, &id, bytes, ttl, default)
            .await;
        if matches!(&reserved, Err(err) if err.is_transient()) {
            reserved = self
                .quota
                .reserve(&plan.workspace, &id, bytes, ttl, default)
                .await;
        }
        match reserved? {
            Reservation::Granted { .. } => Ok(id),
            Reservation::Exceeded { limit, used } => Err(IngestError::QuotaExceeded {
                workspace: plan.workspace.clone(),
                limit,
                used,
                requested: bytes,
            }),
        }
    }
}
