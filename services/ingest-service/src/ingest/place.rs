//! Placing a processed upload as the target kind's [`Placement`] says: a new receipt is
//! created, an entry's image attached once, a target's image replaced or a report appended to.
//! Where the target's current image matters, the commit ([`super::commit`]) is a
//! compare-and-set against the record read.

use super::lock::with_lock;
use super::plan::UploadPlan;
use super::policy::Placement;
use super::process::Content;
use super::{Ingestor, MAX_ATTEMPTS};
use crate::error::IngestError;
use crate::state::ImageRecord;

impl Ingestor {
    /// Places `content` as the plan's placement says. Where the target's current image
    /// matters, the commit is a compare-and-set against the record read; the target's lock only
    /// keeps writers from wasting work, and a writer that loses starts over (replace) or is
    /// refused (attach once).
    pub(super) async fn place(
        &self,
        plan: &UploadPlan,
        content: Content,
    ) -> Result<ImageRecord, IngestError> {
        let catalog_key = plan.target.catalog_key();
        match plan.policy.placement {
            // A new receipt's key is new: nobody else can have written it.
            Placement::Create => self
                .commit(plan, content, None)
                .await?
                .ok_or(IngestError::AlreadyAttached),
            Placement::AttachOnce => {
                with_lock(&self.catalog, lock_name(plan), self.locks, async {
                    if self
                        .catalog
                        .image(&plan.workspace, &catalog_key)
                        .await?
                        .is_some()
                    {
                        return Err(IngestError::AlreadyAttached);
                    }
                    self.commit(plan, content, None)
                        .await?
                        .ok_or(IngestError::AlreadyAttached)
                })
                .await
            }
            Placement::Replace | Placement::Append => {
                with_lock(&self.catalog, lock_name(plan), self.locks, async {
                    for _ in 0..MAX_ATTEMPTS {
                        let previous = self.catalog.image(&plan.workspace, &catalog_key).await?;
                        if let Some(record) = self.commit(plan, content.clone(), previous).await? {
                            return Ok(record);
                        }
                    }
                    Err(IngestError::Busy)
                })
                .await
            }
        }
    }
}

/// The lock serialising writes to the plan's target.
pub(crate) fn lock_name(plan: &UploadPlan) -> String {
    format!("target:{}", plan.target.catalog_key())
}
