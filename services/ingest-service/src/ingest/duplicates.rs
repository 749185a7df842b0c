//! Duplicate receipts at ingest. Every image of a workspace but report PDFs is indexed, in the
//! step that commits its record, by the SHA-256 of its stored bytes and, for a picture, by its
//! perceptual hash; an image that is replaced or deleted leaves the index in the same step. An
//! upload is looked up before its commit: an exact match is an image with the same bytes; a
//! perceptual match one whose hash is within `limits.duplicates.max_distance` bits and whose
//! block signature confirms it (a 64-bit hash describes a receipt's layout, so receipts of one
//! shop with other amounts hash alike; the signature tells them apart). A workspace that refuses
//! duplicates gets `DUPLICATE_IMAGE` for an exact match, checked again inside the commit.

use super::Ingestor;
use crate::error::IngestError;
use crate::state::{DupEntry, DuplicateRef, ImageRecord, now_millis};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use imaging_pipeline::{Fingerprint, signature_distance};

/// Earlier images an upload is answered with, at most.
pub const MAX_DUPLICATES: usize = 5;

/// The index entry of an image about to be stored as `image_id`.
pub(super) fn entry_for(
    image_id: &str,
    sha256: &str,
    fingerprint: Option<&Fingerprint>,
) -> DupEntry {
    DupEntry {
        image_id: image_id.to_owned(),
        sha256: sha256.to_owned(),
        phash: fingerprint.map(|f| format!("{:016x}", f.hash)),
        signature: fingerprint.map_or_else(String::new, |f| STANDARD.encode(&f.signature)),
        created_ms: now_millis(),
    }
}

/// What the index holds of a stored image (enough to take it out).
pub(super) fn entry_of(record: &ImageRecord) -> DupEntry {
    DupEntry {
        image_id: record.image_id.clone(),
        ..DupEntry::probe(&record.sha256, record.phash.as_deref())
    }
}

impl Ingestor {
    /// The earlier images of `workspace` that `entry` (about to be stored) duplicates: exact
    /// matches first, then the closest pictures, newest first among equals; at most
    /// [`MAX_DUPLICATES`].
    pub(super) async fn find_duplicates(
        &self,
        workspace: &str,
        entry: &DupEntry,
    ) -> Result<Vec<DuplicateRef>, IngestError> {
        let settings = &self.limits.duplicates;
        if !settings.enabled {
            return Ok(Vec::new());
        }
        let candidates = self
            .catalog
            .duplicate_candidates(
                workspace,
                &entry.sha256,
                entry.phash.as_deref(),
                settings.candidates,
            )
            .await?;
        let hash = |entry: &DupEntry| {
            entry
                .phash
                .as_deref()
                .and_then(|h| u64::from_str_radix(h, 16).ok())
        };
        let signature = STANDARD.decode(&entry.signature).unwrap_or_default();
        let mut found: Vec<(u32, u64, DuplicateRef)> = Vec::new();
        for candidate in candidates {
            if candidate.image_id == entry.image_id {
                continue;
            }
            if candidate.sha256 == entry.sha256 {
                found.push((
                    0,
                    candidate.created_ms,
                    DuplicateRef {
                        image_id: candidate.image_id,
                        match_kind: "exact".to_owned(),
                        distance: 0,
                    },
                ));
                continue;
            }
            let (Some(mine), Some(theirs)) = (hash(entry), hash(&candidate)) else {
                continue;
            };
            let distance = (mine ^ theirs).count_ones();
            if distance > settings.max_distance {
                continue;
            }
            let other = STANDARD.decode(&candidate.signature).unwrap_or_default();
            if signature_distance(&signature, &other) > settings.signature_distance {
                continue;
            }
            found.push((
                1 + distance,
                candidate.created_ms,
                DuplicateRef {
                    image_id: candidate.image_id,
                    match_kind: "perceptual".to_owned(),
                    distance,
                },
            ));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        Ok(found
            .into_iter()
            .take(MAX_DUPLICATES)
            .map(|(_, _, found)| found)
            .collect())
    }
}
