//! Targets: what an image is attached to, how its ID is checked, where its record lives in the
//! catalog and where its bytes live in storage.
//!
//! Object key layout (stable): `ws/{workspaceId}/{kind}/{targetId}/{objectId}.{ext}` with
//! `{kind}` one of `receipts`, `expense-entries`, `invoices`, `reports`, `workspace-expenses`.
//! Every object of a workspace is under `ws/{workspaceId}/`, and the path names its target,
//! which is how the janitor tells an orphan from a committed object.

use crate::error::IngestError;
use imaging_pipeline::MediaType;

/// Target kinds, as in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A loose receipt; the server makes its ID.
    Receipt,
    /// One image per expense entry.
    ExpenseEntry,
    /// One image per invoice (payment request).
    Invoice,
    /// One PDF per report, appended to.
    Report,
    /// One WebP per workspace expense, replaced by new uploads.
    WorkspaceExpense,
}

impl Kind {
    /// Catalog name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Receipt => "RECEIPT",
            Kind::ExpenseEntry => "EXPENSE_ENTRY",
            Kind::Invoice => "INVOICE",
            Kind::Report => "REPORT",
            Kind::WorkspaceExpense => "WORKSPACE_EXPENSE",
        }
    }

    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Receipt,
        Kind::ExpenseEntry,
        Kind::Invoice,
        Kind::Report,
        Kind::WorkspaceExpense,
    ];

    /// The kind with catalog name `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kind whose objects live in folder `dir`.
    pub fn from_dir(dir: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.dir() == dir)
    }

    /// Folder in the object key.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Receipt => "receipts",
            Kind::ExpenseEntry => "expense-entries",
            Kind::Invoice => "invoices",
            Kind::Report => "reports",
            Kind::WorkspaceExpense => "workspace-expenses",
        }
    }
}

/// A target named by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// Kind.
    pub kind: Kind,
    /// Target ID (for receipts: the image ID, empty on upload).
    pub id: String,
    /// Workspace ID, for workspace expenses.
    pub workspace: String,
}

/// Checks an ID: 1 to 128 characters of `[A-Za-z0-9_$-]`.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
}

impl TargetRef {
    /// Checks the IDs this target carries (`id` may be empty only for a receipt upload).
    pub fn validate(&self, upload: bool) -> Result<(), IngestError> {
        let id_ok = if self.kind == Kind::Receipt && upload {
            self.id.is_empty() || valid_id(&self.id)
        } else {
            valid_id(&self.id)
        };
        if !id_ok {
            return Err(IngestError::InvalidId("target.id"));
        }
        if self.kind == Kind::WorkspaceExpense && !valid_id(&self.workspace) {
            return Err(IngestError::InvalidId("target.workspace_id"));
        }
        Ok(())
    }

    /// Key of this target's records in the catalog.
    pub fn catalog_key(&self) -> String {
        match self.kind {
            Kind::WorkspaceExpense => {
                format!("{}:{}/{}", self.kind.name(), self.workspace, self.id)
            }
            kind => format!("{}:{}", kind.name(), self.id),
        }
    }
}

/// A fresh object key for `kind`/`target_id` in `workspace`.
pub fn object_key(workspace: &str, kind: Kind, target_id: &str, media: MediaType) -> String {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let name = match kind {
        Kind::WorkspaceExpense => {
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            format!("receipt-{millis}-{}", &unique[..12])
        }
        _ => unique,
    };
    format!(
        "ws/{workspace}/{}/{target_id}/{name}.{}",
        kind.dir(),
        media.extension()
    )
}

/// The workspace an object key belongs to.
pub fn workspace_of_key(key: &str) -> Option<&str> {
    key.strip_prefix("ws/")?.split('/').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_path_characters_are_refused() {
        assert!(valid_id("A2C40CEE415B43B2A0BE"));
        assert!(valid_id("aBcDe$pyoy31$pnGa-_"));
        for bad in ["", "../x", "a/b", "a b", "a.b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn object_keys_follow_the_documented_layout() {
        let key = object_key("w1", Kind::WorkspaceExpense, "e1", MediaType::Webp);
        assert!(
            key.starts_with("ws/w1/workspace-expenses/e1/receipt-"),
            "{key}"
        );
        assert!(key.ends_with(".webp"));
        assert_eq!(workspace_of_key(&key), Some("w1"));
        crate::storage::validate_key(&key).unwrap();
    }
}
