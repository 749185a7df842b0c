//! Object storage behind one small trait, one module per backend: the local filesystem
//! (`fs.rs`, the embedded default, with its signed-URL file server in `files.rs`) and S3
//! (`s3/`, MinIO or any S3-compatible server). The contract tests in `tests/` run against both.

pub mod files;
mod fs;
mod s3;
pub mod signed_url;

pub use fs::FsStore;
pub use s3::S3Store;

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// A failure of the storage backend. Never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend could not be reached, timed out, or answered with a server error (5xx).
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the request (4xx other than not-found), or a local I/O error.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A key that is not a valid object key.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The object an append builds on is gone (deleted or replaced since it was read), or is not
    /// the length the caller read.
    #[error("base object {0:?} is gone or changed")]
    BaseChanged(String),
}

impl StorageError {
    /// True for failures that may heal by themselves (unreachable server, timeout, a 5xx):
    /// clients are told to retry. Everything else is permanent.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Unavailable(_))
    }
}

/// One stored object, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was written, if the backend says.
    pub modified: Option<std::time::SystemTime>,
}

/// Digests of an object's bytes, computed by the caller as the bytes arrived (or were made), so
/// that the storage server checks the body against what the service received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest {
    /// SHA-256 (the record's, and a signed S3 payload's).
    pub sha256: [u8; 32],
    /// CRC32C (an S3 `x-amz-checksum-crc32c` header), if the caller computed it (see
    /// [`ObjectStore::checks_crc32c`]); a store that needs it and is not given it computes it.
    pub crc32c: Option<u32>,
}

impl BodyDigest {
    /// Both digests of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        BodyDigest {
            sha256: sha2::Sha256::digest(bytes).into(),
            crc32c: Some(crc32c::crc32c(bytes)),
        }
    }
}

/// Where resumable uploads are staged: `sessions/{id}/...`.
pub const STAGING_PREFIX: &str = "sessions/";

/// The bytes of a resumable upload so far, as storage holds them under the upload's prefix
/// (`sessions/{id}`). It is kept in the session record, and only what it names counts: a write
/// whose new state was never committed (the service died, or lost a race) changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Staged {
    /// Bytes held.
    pub len: u64,
    /// Writes so far (each names its own objects, so none overwrites a committed one).
    pub writes: u64,
    /// S3: the multipart upload that holds the whole parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<String>,
    /// S3: its parts so far, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<StagedPart>,
    /// S3: the objects holding the bytes after the parts (fewer than a part's minimum in all),
    /// one per write, in order, with their lengths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<(String, u64)>,
}

/// One part of a staged multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedPart {
    /// Its part number.
    pub number: u32,
    /// The ETag S3 gave it.
    pub etag: String,
    /// Its size.
    pub len: u64,
}

/// One message of a streamed write ([`ObjectStore::put_streamed`]): the object's next bytes, or
/// the word that all of them were sent and accepted.
#[derive(Debug, Clone)]
pub enum Streamed {
    /// The next bytes.
    Data(Bytes),
    /// Every byte was sent and the caller accepts them: the object may be completed.
    End,
}

/// The bytes of a streamed write, as the caller sends them.
pub type StreamedBody = tokio::sync::mpsc::Receiver<Streamed>;

/// Where the bytes live.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Appends `bytes` to the upload staged under `prefix`, whose committed state is `staged`;
    /// returns the new state, which counts once the caller has committed it. S3 keeps whole
    /// parts (5 MiB and more) in a multipart upload and each write after them in an object of
    /// its own until they add up to a part; the filesystem keeps one part file, cut back to
    /// `staged.len` first.
    async fn stage(
        &self,
        prefix: &str,
        staged: &Staged,
        bytes: Bytes,
    ) -> Result<Staged, StorageError>;
    /// Removes what `old` names and `new` does not (called once `new` is committed).
    async fn unstage_replaced(&self, old: &Staged, new: &Staged) -> Result<(), StorageError>;
    /// The whole upload staged under `prefix` (at most the largest upload's size).
    async fn staged_bytes(&self, prefix: &str, staged: &Staged) -> Result<Bytes, StorageError>;
    /// Removes everything staged under `prefix`.
    async fn discard_staged(&self, prefix: &str, staged: &Staged) -> Result<(), StorageError>;
    /// Writes the whole object; readers see either nothing or all of it. `digest` holds the
    /// digests of `bytes`, which the caller already has; S3 checks the body against one of them.
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        digest: &BodyDigest,
        content_type: &str,
    ) -> Result<(), StorageError>;
    /// Writes the object from bytes as they arrive on `body`, `size` bytes in all, within
    /// `within`. Readers see nothing until [`Streamed::End`] arrives after exactly `size`
    /// bytes, then all of it; a body that closes without `End` (the sender dropped it: the
    /// upload failed or was refused), or carries other than `size` bytes, writes nothing. S3
    /// streams one PUT whose chunks are each signed (or, with `storage.payload = "checksum"`,
    /// whose CRC32C trailer is checked), and sends its last chunk only after `End`; the
    /// filesystem writes a temp file, renamed into place after `End`.
    async fn put_streamed(
        &self,
        key: &str,
        size: u64,
        content_type: &str,
        body: StreamedBody,
        within: Duration,
    ) -> Result<(), StorageError>;
    /// True if [`ObjectStore::put`] has the server check bodies by CRC32C, so callers should
    /// compute it as the bytes arrive.
    fn checks_crc32c(&self) -> bool {
        false
    }
    /// Writes `key` as the existing object `base` (`base_len` bytes long) followed by `tail`,
    /// without the caller reading `base` and without changing it: S3 copies `base` inside the
    /// server (a multipart upload whose first part is `UploadPartCopy`), the filesystem shares
    /// its immutable segment files. Readers see either
    /// nothing or the whole new object; [`StorageError::BaseChanged`] if `base` is gone or not
    /// `base_len` bytes.
    async fn put_appended(
        &self,
        key: &str,
        base: &str,
        base_len: u64,
        tail: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError>;
    /// Reads the whole object; `None` if it does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError>;
    /// Deletes the object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Every object whose key starts with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StorageError>;
    /// An expiring URL from which a client can GET the object.
    async fn url(&self, key: &str, ttl: Duration) -> Result<String, StorageError>;
    /// Checks that the backend answers.
    async fn check(&self) -> Result<(), StorageError>;
    /// Removes leftovers of interrupted writes older than `age` (temp files, abandoned
    /// multipart uploads); returns how many were removed.
    async fn sweep(&self, age: Duration) -> Result<usize, StorageError>;
}

/// Checks a key: relative, `/`-separated segments of `[A-Za-z0-9._$-]`, no `.` or `..` segment,
/// none starting with `.` (the stores' own temp names) or ending in `.parts` (a segmented object's
/// directory on the filesystem).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && !segment.ends_with(fs::PARTS_SUFFIX)
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._$-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys_that_could_escape_the_root_are_refused() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "..",
            "a/./b",
            "a b",
            "a\\b",
            "a/b/",
            ".tmp-x",
            "a/.hidden",
            "ws/r/x.pdf.parts",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate_key("ws/w1/receipts/abc$1/x.jpg").is_ok());
    }
}
