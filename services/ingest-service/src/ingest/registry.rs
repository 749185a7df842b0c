//! Registering workspaces (their quota) and targets (expense entries, invoices, reports and
//! workspace expenses), and removing targets with their image.

use super::{Ingestor, Kind, TargetRef, target};
use crate::auth::{self, Claims};
use crate::error::IngestError;
use crate::state::{Registered, TargetRecord};

impl Ingestor {
    /// Registers a workspace with `quota` bytes (0 = the default) and, if given, whether it
    /// refuses uploads of bytes it holds; returns the limit set.
    pub async fn register_workspace(
        &self,
        claims: &Claims,
        workspace: &str,
        quota: u64,
        refuse_duplicates: Option<bool>,
    ) -> Result<u64, IngestError> {
        if !target::valid_id(workspace) {
            return Err(IngestError::InvalidId("workspace_id"));
        }
        auth::can_manage_workspace(claims, workspace)?;
        let limit = if quota == 0 {
            self.limits.quota.default_bytes
        } else {
            quota
        };
        self.quota.set_limit(workspace, limit).await?;
        if let Some(refuse) = refuse_duplicates {
            self.catalog
                .set_refuse_duplicates(workspace, refuse)
                .await?;
        }
        Ok(limit)
    }

    /// Registers a target owned by `owner` in `workspace`; true if it was new, false if it was
    /// registered identically. A target never moves: registered with another workspace or owner,
    /// it is refused with `TARGET_CONFLICT`.
    pub async fn register_target(
        &self,
        claims: &Claims,
        target: &TargetRef,
        workspace: &str,
        owner: &str,
    ) -> Result<bool, IngestError> {
        target.validate(false)?;
        if target.kind == Kind::Receipt {
            return Err(IngestError::invalid(
                "target.kind",
                "receipts are created by uploading, not registered",
            ));
        }
        if !target::valid_id(workspace)
            || (target.kind == Kind::WorkspaceExpense && target.workspace != workspace)
        {
            return Err(IngestError::InvalidId("workspace_id"));
        }
        if owner.is_empty() {
            return Err(IngestError::invalid("owner", "owner is required"));
        }
        auth::can_manage_workspace(claims, workspace)?;
        if self.quota.limit(workspace).await?.is_none() {
            return Err(IngestError::TargetNotFound("workspace"));
        }
        let record = TargetRecord {
            workspace: workspace.to_owned(),
            owner: owner.to_owned(),
        };
        match self
            .catalog
            .put_target(&target.catalog_key(), &record)
            .await?
        {
            Registered::Created => Ok(true),
            Registered::Unchanged => Ok(false),
            Registered::Conflict(_) => Err(IngestError::TargetConflict),
        }
    }

    /// Forgets a target and removes its image, if any, giving its bytes back to the workspace
    /// that was charged; true if the target existed. A target registered again later starts
    /// without an image, whoever it is registered for.
    pub async fn remove_target(
        &self,
        claims: &Claims,
        target: &TargetRef,
    ) -> Result<bool, IngestError> {
        target.validate(false)?;
        let key = target.catalog_key();
        let Some(record) = self.catalog.target(&key).await? else {
            auth::can_manage_workspace(claims, &claims.ws)?;
            return Ok(false);
        };
        auth::can_manage_workspace(claims, &record.workspace)?;
        self.remove_image(&record.workspace, target, None).await?;
        Ok(self.catalog.remove_target(&key).await?)
    }
}
