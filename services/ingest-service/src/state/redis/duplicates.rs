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
        // Every set in one round trip (they share the workspace's slot): the SHA-256's with the
        // times the images were indexed (its members need nothing more), the quarters' ids.
        let mut pipe = redis::pipe();
        pipe.zrevrange_withscores(&sets[0], 0, last);
        for set in &sets[1..] {
            pipe.zrevrange(set, 0, last);
        }
        type Exact = Vec<(String, f64)>;
        let (exact, quarters): (Exact, Vec<Vec<String>>) = if sets.len() == 1 {
            let (exact,): (Exact,) = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            (exact, Vec::new())
        } else {
            // The SHA-256's set and the four quarters' (`bands` gives four or none).
            let (exact, a, b, c, d): (Exact, Vec<String>, Vec<String>, Vec<String>, Vec<String>) =
                pipe.query_async(&mut self.conn())
                    .await
                    .map_err(unavailable)?;
            (exact, vec![a, b, c, d])
        };
        let mut entries: Vec<crate::state::DupEntry> = exact
            .into_iter()
            .map(|(image_id, score)| crate::state::DupEntry {
                image_id,
                created_ms: score as u64,
                ..crate::state::DupEntry::probe(sha256, None)
            })
            .collect();
        let mut ids: Vec<String> = quarters
            .into_iter()
            .flatten()
            .filter(|id| !entries.iter().any(|e| &e.image_id == id))
            .collect();
        ids.sort();
        ids.dedup();
        entries.reserve(ids.len());
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
