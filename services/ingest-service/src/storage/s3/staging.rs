//! Resumable uploads staged in S3: whole parts (5 MiB and more) go to a multipart upload as soon
//! as there are enough bytes for one; the bytes after them wait in a tail object, which every
//! write replaces by a new one (old tail plus new bytes) under its own name. Only what the
//! committed [`Staged`] names counts, so a write that never commits changes nothing that counts.
//! At completion the tail becomes the last part and the upload one object, read back whole.

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
        validate_key(prefix)?;
        let pending = self.tail_bytes(staged).await?;
        let mut joined = Vec::with_capacity(pending.len() + bytes.len());
        joined.extend_from_slice(&pending);
        joined.extend_from_slice(&bytes);
        let mut next = Staged {
            len: staged.len + bytes.len() as u64,
            writes: staged.writes + 1,
            multipart: staged.multipart.clone(),
            parts: staged.parts.clone(),
            tail: None,
        };
        if joined.len() as u64 >= MIN_PART_BYTES {
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
        } else if !joined.is_empty() {
            let key = format!("{prefix}/tail-{}", next.writes);
            let digest = crate::storage::BodyDigest::of(&joined);
            use crate::storage::ObjectStore;
            self.put(&key, Bytes::from(joined), &digest, STAGED_TYPE)
                .await?;
            next.tail = Some(key);
        }
        Ok(next)
    }

    /// The bytes of `staged`'s tail (none if it has none).
    async fn tail_bytes(&self, staged: &Staged) -> Result<Bytes, StorageError> {
        use crate::storage::ObjectStore;
        let Some(tail) = &staged.tail else {
            return Ok(Bytes::new());
        };
        self.get(tail)
            .await?
            .ok_or_else(|| StorageError::Backend(format!("staged tail {tail} is gone")))
    }

    pub(super) async fn unstage(&self, old: &Staged, new: &Staged) -> Result<(), StorageError> {
        use crate::storage::ObjectStore;
        match &old.tail {
            Some(tail) if new.tail.as_ref() != Some(tail) => self.delete(tail).await,
            _ => Ok(()),
        }
    }

    pub(super) async fn read_staged(
        &self,
        prefix: &str,
        staged: &Staged,
    ) -> Result<Bytes, StorageError> {
        use crate::storage::ObjectStore;
        validate_key(prefix)?;
        let Some(upload_id) = &staged.multipart else {
            return self.tail_bytes(staged).await;
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
        let tail = self.tail_bytes(staged).await?;
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
        if let Some(upload_id) = &staged.multipart {
            self.abort(&whole, upload_id).await?;
        }
        // Tails of writes that never committed are under the prefix too.
        for object in self.list(&format!("{prefix}/")).await? {
            self.delete(&object.key).await?;
        }
        Ok(())
    }
}
