//! Filesystem backend: one file per object under a root directory. Writes go to a temp file in
//! the same directory, are synced, then renamed into place, so readers never see half an object.

use super::signed_url::UrlSigner;
use super::{ObjectEntry, ObjectStore, StorageError, validate_key};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

/// Prefix of temp files; the janitor and `list` skip them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Objects on the local filesystem, served through HMAC-signed URLs.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    signer: UrlSigner,
    public_url: String,
}

impl FsStore {
    /// A store rooted at `root` (created if missing) whose URLs start with `public_url`.
    pub async fn new(
        root: impl Into<PathBuf>,
        signer: UrlSigner,
        public_url: impl Into<String>,
    ) -> Result<Self, StorageError> {
        let root = root.into();
        tokio::fs::create_dir_all(&root).await.map_err(io)?;
        Ok(Self {
            root,
            signer,
            public_url: public_url.into().trim_end_matches('/').to_owned(),
        })
    }

    /// The URL signer, shared with the file server.
    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    /// Opens an object for streaming: the file and its length; `None` if it does not exist.
    pub async fn open(&self, key: &str) -> Result<Option<(tokio::fs::File, u64)>, StorageError> {
        let file = match tokio::fs::File::open(self.path(key)?).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io(err)),
        };
        let length = file.metadata().await.map_err(io)?.len();
        Ok(Some((file, length)))
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(err: std::io::Error) -> StorageError {
    StorageError::Backend(err.to_string())
}

#[async_trait]
impl ObjectStore for FsStore {
    #[tracing::instrument(name = "storage.put", skip_all, fields(backend = "fs", key = %key))]
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        _sha256: &[u8; 32],
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let written = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            file.write_all(&bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temp, &path).await
        }
        .await;
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(io(err));
        }
        Ok(())
    }

    #[tracing::instrument(name = "storage.get", skip_all, fields(backend = "fs", key = %key))]
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io(err)),
        }
    }

    #[tracing::instrument(name = "storage.delete", skip_all, fields(backend = "fs", key = %key))]
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(err)),
        }
    }

    #[tracing::instrument(name = "storage.list", skip_all, fields(backend = "fs", prefix = %prefix))]
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StorageError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &mut out).map_err(io)?;
            out.retain(|entry| entry.key.starts_with(&prefix));
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|err| StorageError::Backend(err.to_string()))?
    }

    #[tracing::instrument(name = "storage.url", skip_all, fields(backend = "fs", key = %key))]
    async fn url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        validate_key(key)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let expires = now + ttl.as_secs();
        let signature = self.signer.sign(key, expires);
        Ok(format!(
            "{}/files/{key}?expires={expires}&signature={signature}",
            self.public_url
        ))
    }

    async fn check(&self) -> Result<(), StorageError> {
        tokio::fs::metadata(&self.root)
            .await
            .map(|_| ())
            .map_err(io)
    }

    async fn sweep(&self, age: Duration) -> Result<usize, StorageError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep_temp_files(&root, age).map_err(io))
            .await
            .map_err(|err| StorageError::Backend(err.to_string()))?
    }
}

/// Deletes temp files (left by writes interrupted before their rename) older than `age`.
fn sweep_temp_files(dir: &Path, age: Duration) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            removed += sweep_temp_files(&path, age)?;
        } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let modified = entry.metadata()?.modified()?;
            if modified.elapsed().unwrap_or_default() >= age {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectEntry>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let path = entry.path();
        if file_type.is_dir() {
            walk(root, &path, out)?;
        } else if file_type.is_file()
            && !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
            && let Ok(relative) = path.strip_prefix(root)
        {
            let key = relative.to_string_lossy().replace('\\', "/");
            let metadata = entry.metadata()?;
            out.push(ObjectEntry {
                key,
                size: metadata.len(),
                modified: metadata.modified().ok(),
            });
        }
    }
    Ok(())
}
