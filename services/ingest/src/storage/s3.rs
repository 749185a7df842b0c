//! S3 backend (MinIO or any S3-compatible server) through `rust-s3`: path-style addressing,
//! SigV4, presigned GET URLs. `rust-s3` returns 4xx/5xx as `Ok`, so every status is checked.

use super::{ObjectEntry, ObjectStore, StorageError, validate_key};
use async_trait::async_trait;
use bytes::Bytes;
use s3::creds::Credentials;
use s3::{Bucket, Region};
use std::time::Duration;

/// Objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    bucket: Box<Bucket>,
    /// Same bucket addressed through the endpoint clients can reach, for presigning.
    public_bucket: Box<Bucket>,
}

fn bucket(
    name: &str,
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
) -> Result<Box<Bucket>, StorageError> {
    let credentials = Credentials::new(Some(access_key), Some(secret_key), None, None, None)
        .map_err(|err| StorageError::Backend(err.to_string()))?;
    let region = Region::Custom {
        region: region.to_owned(),
        endpoint: endpoint.trim_end_matches('/').to_owned(),
    };
    let bucket = Bucket::new(name, region, credentials)
        .map_err(|err| StorageError::Backend(err.to_string()))?
        .with_path_style();
    bucket
        .with_request_timeout(Duration::from_secs(30))
        .map_err(|err| StorageError::Backend(err.to_string()))
}

impl S3Store {
    /// A store for `bucket_name` at `endpoint`; presigned URLs use `public_endpoint` if not empty.
    pub fn new(
        endpoint: &str,
        public_endpoint: &str,
        region: &str,
        bucket_name: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Result<Self, StorageError> {
        let public = if public_endpoint.is_empty() {
            endpoint
        } else {
            public_endpoint
        };
        Ok(Self {
            bucket: bucket(bucket_name, endpoint, region, access_key, secret_key)?,
            public_bucket: bucket(bucket_name, public, region, access_key, secret_key)?,
        })
    }
}

fn transport(err: s3::error::S3Error) -> StorageError {
    StorageError::Unavailable(err.to_string())
}

fn status(op: &str, key: &str, code: u16) -> StorageError {
    let message = format!("{op} {key}: HTTP {code}");
    if code >= 500 {
        StorageError::Unavailable(message)
    } else {
        StorageError::Backend(message)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    #[tracing::instrument(name = "storage.put", skip_all, fields(backend = "s3", key = %key))]
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        let response = self
            .bucket
            .put_object_with_content_type(key, &bytes, content_type)
            .await
            .map_err(transport)?;
        match response.status_code() {
            200..=299 => Ok(()),
            code => Err(status("PUT", key, code)),
        }
    }

    #[tracing::instrument(name = "storage.get", skip_all, fields(backend = "s3", key = %key))]
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        validate_key(key)?;
        let response = self.bucket.get_object(key).await.map_err(transport)?;
        match response.status_code() {
            200..=299 => Ok(Some(response.bytes().clone())),
            404 => Ok(None),
            code => Err(status("GET", key, code)),
        }
    }

    #[tracing::instrument(name = "storage.delete", skip_all, fields(backend = "s3", key = %key))]
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        let response = self.bucket.delete_object(key).await.map_err(transport)?;
        match response.status_code() {
            200..=299 | 404 => Ok(()),
            code => Err(status("DELETE", key, code)),
        }
    }

    #[tracing::instrument(name = "storage.list", skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StorageError> {
        let pages = self
            .bucket
            .list(prefix.to_owned(), None)
            .await
            .map_err(transport)?;
        let mut out: Vec<ObjectEntry> = pages
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|object| ObjectEntry {
                key: object.key,
                size: object.size,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    #[tracing::instrument(name = "storage.url", skip_all, fields(backend = "s3", key = %key))]
    async fn url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        validate_key(key)?;
        let seconds = u32::try_from(ttl.as_secs().clamp(1, 604_800)).unwrap_or(604_800);
        self.public_bucket
            .presign_get(key, seconds, None)
            .await
            .map_err(|err| StorageError::Backend(err.to_string()))
    }

    async fn sweep(&self, age: Duration) -> Result<usize, StorageError> {
        // The service writes single PUTs; multipart uploads come from other tools or from
        // interrupted large copies, and cost storage until aborted.
        let pages = self
            .bucket
            .list_multiparts_uploads(None, None)
            .await
            .map_err(transport)?;
        let cutoff = time::OffsetDateTime::now_utc() - age;
        let mut aborted = 0;
        for upload in pages.into_iter().flat_map(|page| page.uploads) {
            let started = time::OffsetDateTime::parse(
                &upload.initiated,
                &time::format_description::well_known::Rfc3339,
            );
            if started.is_ok_and(|started| started <= cutoff) {
                self.bucket
                    .abort_upload(&upload.key, &upload.id)
                    .await
                    .map_err(transport)?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    async fn check(&self) -> Result<(), StorageError> {
        let (_, code) = self
            .bucket
            .head_object("health-probe")
            .await
            .map_err(transport)?;
        match code {
            200..=299 | 404 => Ok(()),
            code => Err(status("HEAD", "health-probe", code)),
        }
    }
}
