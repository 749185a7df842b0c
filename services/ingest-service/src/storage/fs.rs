//! Filesystem backend: one file per object under a root directory. Writes go to a temp file in
//! the same directory, are synced, then renamed into place, so readers never see half an object.
//!
//! An object made by [`ObjectStore::put_appended`] is a directory `{key}.parts` of numbered
//! segment files, read as their concatenation: the base object's files are hard-linked in (no
//! copy, and the base stays as it is), the new bytes are one more file. Files are never written
//! after they are renamed into place, so an object another append committed can never change,
//! and each object owns its links: deleting one never takes another's bytes.

use super::signed_url::UrlSigner;
use super::{
    BodyDigest, ObjectEntry, ObjectStore, Staged, StorageError, Streamed, StreamedBody,
    validate_key,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

/// Prefix of temp files; the janitor and `list` skip them.
pub const TEMP_PREFIX: &str = ".tmp-";
/// The part file of a staged upload, under its prefix.
const PART_FILE: &str = "part";
/// Suffix of the directory holding a segmented object's files.
pub const PARTS_SUFFIX: &str = ".parts";

/// An object's bytes as a stream of chunks.
pub type ByteStream = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;

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

    /// Opens an object for streaming: its bytes, read a file at a time, and its length; `None`
    /// if it does not exist.
    pub async fn open(&self, key: &str) -> Result<Option<(ByteStream, u64)>, StorageError> {
        use futures::StreamExt;
        let Some(files) = self.files(key).await? else {
            return Ok(None);
        };
        let length = files.iter().map(|(_, len)| len).sum();
        let stream = futures::stream::iter(files)
            .then(|(path, _)| tokio::fs::File::open(path))
            .flat_map(|file| match file {
                Ok(file) => tokio_util::io::ReaderStream::new(file).boxed(),
                Err(err) => futures::stream::once(async { Err(err) }).boxed(),
            })
            .boxed();
        Ok(Some((stream, length)))
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// The files an object is made of, in order, with their lengths; `None` if it does not
    /// exist.
    async fn files(&self, key: &str) -> Result<Option<Vec<(PathBuf, u64)>>, StorageError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(metadata) => return Ok(Some(vec![(path, metadata.len())])),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(err)),
        }
        let parts = with_suffix(&path);
        tokio::task::spawn_blocking(move || segments(&parts))
            .await
            .map_err(|err| StorageError::Backend(err.to_string()))?
            .map_err(io)
    }
}

/// `path` with [`PARTS_SUFFIX`] added to its file name.
fn with_suffix(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PARTS_SUFFIX);
    path.with_file_name(name)
}

/// The segment files of a parts directory in order, with their lengths; `None` if it does not
/// exist.
fn segments(dir: &Path) -> std::io::Result<Option<Vec<(PathBuf, u64)>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut files = Vec::new();
    for entry in entries {
        // A directory removed while it is read (its object deleted) reads as gone.
        let metadata = entry.and_then(|entry| Ok((entry.path(), entry.metadata()?.len())));
        match metadata {
            Ok(file) => files.push(file),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        }
    }
    files.sort();
    Ok(Some(files))
}

/// Builds the parts directory of `base` + `tail` at `temp`, then renames it to `target`.
fn write_appended(
    temp: &Path,
    target: &Path,
    base: &[(PathBuf, u64)],
    tail: &[u8],
) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir(temp)?;
    for (n, (file, _)) in base.iter().enumerate() {
        std::fs::hard_link(file, temp.join(format!("{n:06}")))?;
    }
    let mut last = std::fs::File::create(temp.join(format!("{:06}", base.len())))?;
    last.write_all(tail)?;
    last.sync_all()?;
    std::fs::File::open(temp)?.sync_all()?;
    std::fs::rename(temp, target)?;
    if let Some(parent) = target.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn io(err: std::io::Error) -> StorageError {
    StorageError::Backend(err.to_string())
}

impl FsStore {
    /// Creates `dir` and its missing ancestors under the root, syncing each parent of a
    /// directory it made, so that a path an acknowledged object lives under survives a crash.
    async fn make_dirs(&self, dir: &Path) -> Result<(), StorageError> {
        if tokio::fs::metadata(dir).await.is_ok() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut at = dir;
        while tokio::fs::metadata(at).await.is_err() && at.starts_with(&self.root) {
            missing.push(at.to_path_buf());
            let Some(parent) = at.parent() else { break };
            at = parent;
        }
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        for made in &missing {
            if let Some(parent) = made.parent() {
                let synced = async { tokio::fs::File::open(parent).await?.sync_all().await };
                synced.await.map_err(io)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    #[tracing::instrument(name = "storage.stage", skip_all, fields(backend = "fs", prefix = %prefix))]
    async fn stage(
        &self,
        prefix: &str,
        staged: &Staged,
        bytes: Bytes,
    ) -> Result<Staged, StorageError> {
        let path = self.path(&format!("{prefix}/{PART_FILE}"))?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(&dir).await?;
        let committed = staged.len;
        let written = async {
            use tokio::io::AsyncSeekExt;
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .await?;
            // Bytes past the committed length are a write that never committed: cut off.
            file.set_len(committed).await?;
            file.seek(std::io::SeekFrom::Start(committed)).await?;
            file.write_all(&bytes).await?;
            file.sync_all().await?;
            tokio::fs::File::open(&dir).await?.sync_all().await
        }
        .await;
        written.map_err(io)?;
        Ok(Staged {
            len: committed + bytes.len() as u64,
            writes: staged.writes + 1,
            ..Staged::default()
        })
    }

    async fn unstage_replaced(&self, _old: &Staged, _new: &Staged) -> Result<(), StorageError> {
        Ok(())
    }

    #[tracing::instrument(name = "storage.staged_bytes", skip_all, fields(backend = "fs", prefix = %prefix))]
    async fn staged_bytes(&self, prefix: &str, staged: &Staged) -> Result<Bytes, StorageError> {
        if staged.len == 0 {
            return Ok(Bytes::new());
        }
        let path = self.path(&format!("{prefix}/{PART_FILE}"))?;
        let mut bytes = tokio::fs::read(&path).await.map_err(io)?;
        let len = usize::try_from(staged.len).unwrap_or(usize::MAX);
        if bytes.len() < len {
            return Err(StorageError::Backend(format!(
                "{prefix}: the part file is shorter than its committed length"
            )));
        }
        bytes.truncate(len);
        Ok(Bytes::from(bytes))
    }

    #[tracing::instrument(name = "storage.discard_staged", skip_all, fields(backend = "fs", prefix = %prefix))]
    async fn discard_staged(&self, prefix: &str, _staged: &Staged) -> Result<(), StorageError> {
        let dir = self.path(prefix)?;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(err)),
        }
    }

    #[tracing::instrument(name = "storage.put", skip_all, fields(backend = "fs", key = %key))]
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        _digest: &BodyDigest,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(&dir).await?;
        let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let written = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            file.write_all(&bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temp, &path).await?;
            // The rename is durable once its directory is synced: only then may the record
            // that names the object commit.
            tokio::fs::File::open(&dir).await?.sync_all().await
        }
        .await;
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(io(err));
        }
        Ok(())
    }

    #[tracing::instrument(name = "storage.put_streamed", skip_all, fields(backend = "fs", key = %key))]
    async fn put_streamed(
        &self,
        key: &str,
        size: u64,
        _content_type: &str,
        mut body: StreamedBody,
        within: Duration,
    ) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(&dir).await?;
        let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let written = tokio::time::timeout(within, async {
            let mut file = tokio::fs::File::create(&temp).await?;
            let mut len = 0u64;
            loop {
                match body.recv().await {
                    Some(Streamed::Data(bytes)) => {
                        len += bytes.len() as u64;
                        if len > size {
                            return Err(std::io::Error::other("more bytes than announced"));
                        }
                        file.write_all(&bytes).await?;
                    }
                    Some(Streamed::End) if len == size => break,
                    _ => return Err(std::io::Error::other("the write ended before its end")),
                }
            }
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&temp, &path).await?;
            tokio::fs::File::open(&dir).await?.sync_all().await
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the write took too long")));
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(io(err));
        }
        Ok(())
    }

    #[tracing::instrument(name = "storage.put_appended", skip_all, fields(backend = "fs", key = %key))]
    async fn put_appended(
        &self,
        key: &str,
        base: &str,
        base_len: u64,
        tail: Bytes,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let target = with_suffix(&self.path(key)?);
        let files = match self.files(base).await? {
            Some(files) if files.iter().map(|(_, len)| len).sum::<u64>() == base_len => files,
            _ => return Err(StorageError::BaseChanged(base.to_owned())),
        };
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(&dir).await?;
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}{PARTS_SUFFIX}",
            uuid::Uuid::new_v4().simple()
        ));
        let base = base.to_owned();
        tokio::task::spawn_blocking(move || {
            let written = write_appended(&temp, &target, &files, &tail);
            if written.is_err() {
                let _ = std::fs::remove_dir_all(&temp);
            }
            written.map_err(|err| match err.kind() {
                // A segment went while it was being linked: the base was replaced and
                // deleted by another writer.
                std::io::ErrorKind::NotFound => StorageError::BaseChanged(base),
                _ => io(err),
            })
        })
        .await
        .map_err(|err| StorageError::Backend(err.to_string()))?
    }

    #[tracing::instrument(name = "storage.get", skip_all, fields(backend = "fs", key = %key))]
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let Some(files) = self.files(key).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(files.iter().map(|(_, len)| *len as usize).sum());
        for (path, _) in files {
            match tokio::fs::read(path).await {
                Ok(part) => bytes.extend_from_slice(&part),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(io(err)),
            }
        }
        Ok(Some(Bytes::from(bytes)))
    }

    #[tracing::instrument(name = "storage.delete", skip_all, fields(backend = "fs", key = %key))]
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(err)),
        }
        match tokio::fs::remove_dir_all(with_suffix(&path)).await {
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
        let temp = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        let is_dir = entry.file_type()?.is_dir();
        if temp {
            let modified = entry.metadata()?.modified()?;
            if modified.elapsed().unwrap_or_default() >= age {
                if is_dir {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
                removed += 1;
            }
        } else if is_dir && !entry.file_name().to_string_lossy().ends_with(PARTS_SUFFIX) {
            removed += sweep_temp_files(&path, age)?;
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
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        if file_type.is_dir()
            && let Some(object) = name.strip_suffix(PARTS_SUFFIX)
            && let Ok(relative) = path.with_file_name(object).strip_prefix(root)
        {
            let size = segments(&path)?
                .unwrap_or_default()
                .iter()
                .map(|(_, len)| len)
                .sum();
            out.push(ObjectEntry {
                key: relative.to_string_lossy().replace('\\', "/"),
                size,
                modified: entry.metadata()?.modified().ok(),
            });
        } else if file_type.is_dir() {
            walk(root, &path, out)?;
        } else if file_type.is_file()
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
