//! HTTP routes, one module per dialect plus the operational endpoints.

pub mod concur;
pub mod health;
pub mod receipts_v3;
pub mod receipts_v4;
pub mod resumable;
pub mod tus;
pub mod workspace;

#[cfg(test)]
mod tests;

/// An earlier image of the workspace an upload duplicates, as the JSON dialects show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateJson {
    /// The earlier image's ID.
    pub image_id: String,
    /// `exact` (the same bytes) or `perceptual` (the same picture).
    #[serde(rename = "match")]
    pub match_kind: &'static str,
    /// Bits the perceptual hashes differ in (0 for an exact match).
    pub distance: u32,
}

/// The duplicates of an upload's answer or an image, as JSON.
pub fn duplicates_json(found: &[imaging_proto::v1::Duplicate]) -> Vec<DuplicateJson> {
    found
        .iter()
        .map(|d| DuplicateJson {
            image_id: d.image_id.clone(),
            match_kind: match d.r#match() {
                imaging_proto::v1::DuplicateMatch::Exact => "exact",
                _ => "perceptual",
            },
            distance: d.distance,
        })
        .collect()
}
