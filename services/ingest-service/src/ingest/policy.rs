//! What each target kind does with an upload, in one place: which types it accepts, who may
//! write it, how the bytes are converted, and how the result is placed.

use super::target::Kind;
use crate::auth::Access;
use imaging_pipeline::MediaType;

/// How the uploaded bytes become the stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Stored as uploaded, after validation.
    Keep,
    /// Converted to an upright, downscaled lossy WebP.
    Webp,
    /// Its pages are appended to the target's one PDF.
    ReportPdf,
}

/// How the stored object relates to the target's previous image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A new image with a server-made ID (loose receipts).
    Create,
    /// The target takes one image; a second upload is refused with `ALREADY_ATTACHED`.
    AttachOnce,
    /// The new object extends the previous one (report PDFs).
    Append,
    /// The new object replaces the previous one, which is deleted.
    Replace,
}

/// A target kind's upload policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Declared types accepted.
    pub accepts: &'static [MediaType],
    /// Which permission rule applies.
    pub access: Access,
    /// How the bytes are converted.
    pub conversion: Conversion,
    /// How the result is placed.
    pub placement: Placement,
}

/// Concur targets: PDF, JPEG and PNG as they are; HEIC, TIFF and GIF in the form they are stored
/// as (see `MediaType::stored_as`). Concur Image v1 keeps its documented three (the gateway
/// refuses the rest on that dialect).
const CONCUR_TYPES: &[MediaType] = &[
    MediaType::Pdf,
    MediaType::Jpeg,
    MediaType::Png,
    MediaType::Heic,
    MediaType::Tiff,
    MediaType::Gif,
];
/// Workspace receipts: every photo type, converted to WebP (a TIFF of one page).
const WORKSPACE_TYPES: &[MediaType] = &[
    MediaType::Jpeg,
    MediaType::Png,
    MediaType::Webp,
    MediaType::Heic,
    MediaType::Tiff,
    MediaType::Gif,
];

impl Kind {
    /// This kind's policy.
    pub fn policy(self) -> Policy {
        let (accepts, access, conversion, placement) = match self {
            Kind::Receipt => (
                CONCUR_TYPES,
                Access::Concur,
                Conversion::Keep,
                Placement::Create,
            ),
            Kind::ExpenseEntry | Kind::Invoice => (
                CONCUR_TYPES,
                Access::Concur,
                Conversion::Keep,
                Placement::AttachOnce,
            ),
            Kind::Report => (
                CONCUR_TYPES,
                Access::Concur,
                Conversion::ReportPdf,
                Placement::Append,
            ),
            Kind::WorkspaceExpense => (
                WORKSPACE_TYPES,
                Access::Workspace,
                Conversion::Webp,
                Placement::Replace,
            ),
        };
        Policy {
            accepts,
            access,
            conversion,
            placement,
        }
    }
}

impl Policy {
    /// An upload to an existing loose receipt: its pages are appended, as for a report.
    pub fn receipt_append() -> Policy {
        Policy {
            conversion: Conversion::ReportPdf,
            placement: Placement::Append,
            ..Kind::Receipt.policy()
        }
    }

    /// Does this policy accept uploads declared as `media`?
    pub fn accepts(&self, media: MediaType) -> bool {
        self.accepts.contains(&media)
    }

    /// True if the stored size is not the upload's (images converted to WebP; HEIC, TIFF and
    /// GIF stored as JPEG, PDF and PNG), so the declared size is no measure of the quota it
    /// will take.
    pub fn changes_size(&self, media: MediaType) -> bool {
        self.conversion == Conversion::Webp || media.stored_as() != media
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_expenses_take_webp_but_not_pdf_and_concur_targets_the_reverse() {
        assert!(Kind::WorkspaceExpense.policy().accepts(MediaType::Webp));
        assert!(!Kind::WorkspaceExpense.policy().accepts(MediaType::Pdf));
        assert!(Kind::Report.policy().accepts(MediaType::Pdf));
        assert!(!Kind::Receipt.policy().accepts(MediaType::Webp));
        for media in [MediaType::Heic, MediaType::Tiff, MediaType::Gif] {
            for kind in [
                Kind::Receipt,
                Kind::ExpenseEntry,
                Kind::Invoice,
                Kind::Report,
            ] {
                assert!(kind.policy().accepts(media), "{kind:?} {media:?}");
            }
            assert!(Kind::WorkspaceExpense.policy().accepts(media));
            assert!(Kind::Receipt.policy().changes_size(media));
        }
        assert!(!Kind::Receipt.policy().changes_size(MediaType::Jpeg));
        assert!(
            Kind::WorkspaceExpense
                .policy()
                .changes_size(MediaType::Jpeg)
        );
    }

    #[test]
    fn each_kind_places_its_images_as_the_contract_says() {
        assert_eq!(Kind::Receipt.policy().placement, Placement::Create);
        assert_eq!(Kind::ExpenseEntry.policy().placement, Placement::AttachOnce);
        assert_eq!(Kind::Invoice.policy().placement, Placement::AttachOnce);
        assert_eq!(Kind::Report.policy().placement, Placement::Append);
        assert_eq!(
            Kind::WorkspaceExpense.policy().placement,
            Placement::Replace
        );
        assert_eq!(Kind::WorkspaceExpense.policy().access, Access::Workspace);
    }
}
