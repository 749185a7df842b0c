//! The duplicate index in the embedded store: one table of (set, image) pairs, the sets being a
//! workspace's SHA-256s and perceptual-hash quarters, and one of entries, both changed in the
//! transaction of the record they describe.

use super::tables::{DUP_ENTRIES, DUP_SETS, REFUSE_DUPS};
use super::{EmbeddedState, decode, encode, failed};
use crate::state::{DupEntry, StateError};
use redb::ReadableTable;

/// The sets an entry of `workspace` is in: its SHA-256's and its hash quarters'.
fn sets(workspace: &str, entry: &DupEntry) -> Vec<String> {
    let mut sets = vec![format!("{workspace}/sha:{}", entry.sha256)];
    if let Some(bands) = entry.bands() {
        sets.extend(bands.iter().map(|band| format!("{workspace}/q:{band}")));
    }
    sets
}

/// True if an image other than `except` is indexed with the SHA-256 of `entry`.
pub(super) fn exact_taken(
    txn: &redb::WriteTransaction,
    workspace: &str,
    entry: &DupEntry,
    except: &[&str],
) -> Result<bool, StateError> {
    let table = txn.open_table(DUP_SETS).map_err(failed)?;
    let set = format!("{workspace}/sha:{}", entry.sha256);
    for row in table.range((set.as_str(), "")..).map_err(failed)? {
        let (key, _) = row.map_err(failed)?;
        let (at, image) = key.value();
        if at != set {
            break;
        }
        if !except.contains(&image) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds `entry` to the index of `workspace` in `txn`.
pub(super) fn index(
    txn: &redb::WriteTransaction,
    workspace: &str,
    entry: &DupEntry,
) -> Result<(), StateError> {
    change(txn, workspace, entry, true)
}

/// Takes `entry` out of the index of `workspace` in `txn`.
pub(super) fn unindex(
    txn: &redb::WriteTransaction,
    workspace: &str,
    entry: &DupEntry,
) -> Result<(), StateError> {
    change(txn, workspace, entry, false)
}

fn change(
    txn: &redb::WriteTransaction,
    workspace: &str,
    entry: &DupEntry,
    add: bool,
) -> Result<(), StateError> {
    let mut table = txn.open_table(DUP_SETS).map_err(failed)?;
    for set in sets(workspace, entry) {
        let key = (set.as_str(), entry.image_id.as_str());
        if add {
            table.insert(key, entry.created_ms).map_err(failed)?;
        } else {
            table.remove(key).map_err(failed)?;
        }
    }
    let mut entries = txn.open_table(DUP_ENTRIES).map_err(failed)?;
    let key = format!("{workspace}/{}", entry.image_id);
    if add {
        entries
            .insert(key.as_str(), encode(entry)?.as_str())
            .map_err(failed)?;
    } else {
        entries.remove(key.as_str()).map_err(failed)?;
    }
    Ok(())
}

impl EmbeddedState {
    pub(super) async fn dup_candidates(
        &self,
        workspace: &str,
        sha256: &str,
        phash: Option<&str>,
        per_key: usize,
    ) -> Result<Vec<DupEntry>, StateError> {
        let probe = DupEntry::probe(sha256, phash);
        let workspace = workspace.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(DUP_SETS).map_err(failed)?;
            let entries = txn.open_table(DUP_ENTRIES).map_err(failed)?;
            let mut ids: Vec<String> = Vec::new();
            let mut found: Vec<DupEntry> = Vec::new();
            for (index, set) in sets(&workspace, &probe).into_iter().enumerate() {
                let mut members: Vec<(u64, String)> = Vec::new();
                for row in table.range((set.as_str(), "")..).map_err(failed)? {
                    let (key, created) = row.map_err(failed)?;
                    let (at, image) = key.value();
                    if at != set {
                        break;
                    }
                    members.push((created.value(), image.to_owned()));
                }
                members.sort_by(|a, b| b.cmp(a));
                let newest = members.into_iter().take(per_key.max(1));
                if index == 0 {
                    // The SHA-256's set: an exact match needs its ID and time only.
                    found.extend(newest.map(|(created_ms, image_id)| DupEntry {
                        image_id,
                        created_ms,
                        ..DupEntry::probe(&probe.sha256, None)
                    }));
                } else {
                    ids.extend(newest.map(|(_, id)| id));
                }
            }
            ids.retain(|id| !found.iter().any(|e| &e.image_id == id));
            ids.sort();
            ids.dedup();
            for id in ids {
                if let Some(json) = entries
                    .get(format!("{workspace}/{id}").as_str())
                    .map_err(failed)?
                {
                    found.push(decode(json.value())?);
                }
            }
            Ok(found)
        })
        .await
    }

    pub(super) async fn set_refuse_dups(
        &self,
        workspace: &str,
        refuse: bool,
    ) -> Result<(), StateError> {
        let workspace = workspace.to_owned();
        self.write(move |txn| {
            let mut table = txn.open_table(REFUSE_DUPS).map_err(failed)?;
            if refuse {
                table.insert(workspace.as_str(), ()).map_err(failed)?;
            } else {
                table.remove(workspace.as_str()).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn refuse_dups(&self, workspace: &str) -> Result<bool, StateError> {
        let workspace = workspace.to_owned();
        self.read(move |txn| {
            Ok(txn
                .open_table(REFUSE_DUPS)
                .map_err(failed)?
                .get(workspace.as_str())
                .map_err(failed)?
                .is_some())
        })
        .await
    }
}
