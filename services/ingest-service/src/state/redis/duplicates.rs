//! The duplicate index on Redis: sorted sets of image IDs per SHA-256 and per quarter of the
//! perceptual hash, and an entry per image, all in the workspace's slot (written by the
//! `swap_image` script with the record they describe).

use super::{RedisState, decode, unavailable};
use crate::state::StateError;

impl RedisState {
    /// The duplicate index's candidates for an upload (see `Catalog::duplicate_candidates`).
    pub(super) async fn dup_candidates(
        &self,
        workspace: &str,
        sha256: &str,
        phash: Option<&str>,
        per_key: usize,
    ) -> Result<Vec<crate::state::DupEntry>, StateError> {
        let probe = crate::state::DupEntry::probe(sha256, phash);
        let mut sets = vec![self.dup_key(workspace, &format!("sha:{sha256}"))];
        if let Some(bands) = probe.bands() {
            sets.extend(
                bands
                    .iter()
                    .map(|band| self.dup_key(workspace, &format!("q:{band}"))),
            );
        }
        let last = isize::try_from(per_key.max(1)).unwrap_or(isize::MAX) - 1;
        // Every set in one round trip (they share the workspace's slot).
        let mut pipe = redis::pipe();
        for set in &sets {
            pipe.zrevrange(set, 0, last);
        }
        let found: Vec<Vec<String>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let mut ids: Vec<String> = found.into_iter().flatten().collect();
        ids.sort();
        ids.dedup();
        let mut entries = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(64) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|id| self.dup_key(workspace, &format!("img:{id}")))
                .collect();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            for value in values {
                if let Some(entry) = decode(value)? {
                    entries.push(entry);
                }
            }
        }
        Ok(entries)
    }
}
