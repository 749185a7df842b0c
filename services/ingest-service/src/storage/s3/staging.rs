//! Resumable uploads staged in S3: whole parts (5 MiB and more) go to a multipart upload as soon
//! as there are enough bytes for one; until then each write waits in an object of its own (a
//! piece), so a write costs its own bytes, and the pieces are read back once, when they make a
//! part. Only what the committed [`Staged`] names counts, so a write that never commits changes
//! nothing that counts. At completion the pieces become the last part and the upload one object,
//! read back whole.

use super::super::{Staged, StagedPart, StorageError, validate_key};
use super::{MIN_PART_BYTES, S3Store};
use bytes::Bytes;

/// The content type of staged objects (they are never served).
const STAGED_TYPE: &str = "application/octet-stream";

fn whole_key(prefix: &str) -> String {
    format!("{prefix}/whole")
}

impl S3Store {
    pub(super) async fn stage_bytes(
        &self,
        prefix: &str,
        staged: &Staged,
        bytes: Bytes,
    ) -> Result<Staged, StorageError> {
        use crate::storage::ObjectStore;
        validate_key(prefix)?;
        let pending: u64 = staged.pieces.iter().map(|(_, len)| len).sum();
        let mut next = Staged {
            len: staged.len + bytes.len() as u64,
            writes: staged.writes + 1,
            multipart: staged.multipart.clone(),
            parts: staged.parts.clone(),
            pieces: staged.pieces.clone(),
        };
        if pending + bytes.len() as u64 >= MIN_PART_BYTES {
            let mut joined = self.pieces_bytes(staged).await?.to_vec();
            joined.extend_from_slice(&bytes);
            let whole = whole_key(prefix);
            let upload_id = match &staged.multipart {
                Some(id) => id.clone(),
                None => self.create_multipart(&whole, STAGED_TYPE).await?,
            };
            let number = u32::try_from(next.parts.len() + 1).unwrap_or(u32::MAX);
            let len = joined.len() as u64;
            let etag = self
                .upload_part(&whole, &upload_id, number, Bytes::from(joined))
                .await?;
            next.multipart = Some(upload_id);
            next.parts.push(StagedPart { number, etag, len });
            next.pieces.clear();
        } else if !bytes.is_empty() {
            let key = format!("{prefix}/piece-{}", next.writes);
            let digest = crate::storage::BodyDigest::of(&bytes);
            let len = bytes.len() as u64;
            self.put(&key, bytes, &digest, STAGED_TYPE).await?;
            next.pieces.push((key, len));
        }
        Ok(next)
    }

    /// The bytes of `staged`'s pieces, in order (none if it has none).
    async fn pieces_bytes(&self, staged: &Staged) -> Result<Bytes, StorageError> {
        use crate::storage::ObjectStore;
        if let [(key, _)] = staged.pieces.as_slice() {
            return self
                .get(key)
                .await?
                .ok_or_else(|| StorageError::Backend(format!("staged piece {key} is gone")));
        }
        let mut out = Vec::new();
        for (key, len) in &staged.pieces {
            match self.get(key).await? {
                Some(bytes) if bytes.len() as u64 == *len => out.extend_from_slice(&bytes),
                _ => {
                    return Err(StorageError::Backend(format!(
                        "staged piece {key} is gone or changed"
                    )));
                }
            }
        }
        Ok(Bytes::from(out))
    }

    pub(super) async fn unstage(&self, old: &Staged, new: &Staged) -> Result<(), StorageError> {
        use crate::storage::ObjectStore;
        for (key, _) in &old.pieces {
            if !new.pieces.iter().any(|(kept, _)| kept == key) {
                self.delete(key).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn read_staged(
        &self,
        prefix: &str,
        staged: &Staged,
    ) -> Result<Bytes, StorageError> {
        use crate::storage::ObjectStore;
        validate_key(prefix)?;
        let Some(upload_id) = &staged.multipart else {
            return self.pieces_bytes(staged).await;
        };
        let whole = whole_key(prefix);
        // A completion retried after its answer was lost finds the object made.
        if let Some(bytes) = self.get(&whole).await?
            && bytes.len() as u64 == staged.len
        {
            return Ok(bytes);
        }
        let mut parts: Vec<(u32, String)> = staged
            .parts
            .iter()
            .map(|part| (part.number, part.etag.clone()))
            .collect();
        let tail = self.pieces_bytes(staged).await?;
        if !tail.is_empty() {
            let number = u32::try_from(parts.len() + 1).unwrap_or(u32::MAX);
            let etag = self.upload_part(&whole, upload_id, number, tail).await?;
            parts.push((number, etag));
        }
        self.complete_multipart(&whole, upload_id, &parts).await?;
        match self.get(&whole).await? {
            Some(bytes) if bytes.len() as u64 == staged.len => Ok(bytes),
            _ => Err(StorageError::Backend(format!(
                "{whole}: the completed upload is not {} bytes",
                staged.len
            ))),
        }
    }

    pub(super) async fn discard(&self, prefix: &str, staged: &Staged) -> Result<(), StorageError> {
        use crate::storage::ObjectStore;
        validate_key(prefix)?;
        let whole = whole_key(prefix);
        let aborted = match &staged.multipart {
            Some(upload_id) => self.abort(&whole, upload_id).await,
            None => Ok(()),
        };
        // Pieces of writes that never committed are under the prefix too, and so is the object
        // a completed multipart upload made.
        let mut completed = false;
        for object in self.list(&format!("{prefix}/")).await? {
            completed |= object.key == whole;
            self.delete(&object.key).await?;
        }
        // A completed upload is no longer there to abort (some servers refuse, rather than
        // answer 404): only an upload still open that would not abort is a failure.
        if completed { Ok(()) } else { aborted }
    }
}
