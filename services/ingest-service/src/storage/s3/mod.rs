//! S3 backend (MinIO or any S3-compatible server): path-style addressing, SigV4, presigned GET
//! URLs. One way of calling S3 for every operation: a request signed here ([`sigv4`]) and sent
//! with `reqwest` ([`request`]), every status checked, XML answers read with a parser
//! ([`xml`]). Object PUTs prove their bodies as [`PayloadCheck`] says: by the SHA-256 the
//! service already computed, in the signature, or by a signed CRC32C header (over TLS). Large
//! report appends are multipart uploads that copy the report on the server ([`multipart`]).

mod multipart;
mod request;
mod sigv4;
mod staging;
mod streamed;
mod xml;

pub use multipart::MIN_PART_BYTES;

use super::{
    BodyDigest, ObjectEntry, ObjectStore, Staged, StorageError, StreamedBody, validate_key,
};
use crate::configuration::PayloadCheck;
use async_trait::async_trait;
use bytes::Bytes;
use request::{Resource, answer, gone_is_done, status};
use reqwest::{Method, Url};
use sigv4::Signer;
use std::time::Duration;

/// Time limit of one request to the S3 server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a presigned URL may live (S3's limit: seven days).
const MAX_URL_TTL_SECONDS: u64 = 604_800;

/// Objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    http: reqwest::Client,
    signer: Signer,
    /// The bucket's name.
    bucket: String,
    /// `endpoint/bucket`, with the bucket name percent-encoded.
    bucket_url: Url,
    /// The `Host` header of requests to `bucket_url`.
    host: String,
    /// The same bucket through the endpoint clients can reach, for presigned URLs, and its host.
    public_bucket_url: Url,
    public_host: String,
    /// [`PayloadCheck::Signed`] or [`PayloadCheck::Checksum`] (`Auto` resolved).
    payload: PayloadCheck,
}

/// `endpoint/bucket` and the `Host` header that goes with it.
fn bucket_address(endpoint: &str, name: &str) -> Result<(Url, String), StorageError> {
    let base = Url::parse(endpoint.trim_end_matches('/'))
        .map_err(|err| StorageError::Backend(format!("S3 endpoint {endpoint:?}: {err}")))?;
    let host = base
        .host_str()
        .ok_or_else(|| StorageError::Backend(format!("S3 endpoint {endpoint:?} has no host")))?;
    // `port()` is `None` for the scheme's default port, which is also left out of `Host`.
    let host = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let url = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        sigv4::encode_segment(name)
    );
    let url = Url::parse(&url).map_err(|err| StorageError::Backend(err.to_string()))?;
    Ok((url, host))
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
        let (bucket_url, host) = bucket_address(endpoint, bucket_name)?;
        let (public_bucket_url, public_host) = bucket_address(public, bucket_name)?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| StorageError::Backend(err.to_string()))?;
        Ok(Self {
            http,
            signer: Signer::new(access_key, secret_key, region),
            bucket: bucket_name.to_owned(),
            payload: resolve(PayloadCheck::Auto, &bucket_url),
            bucket_url,
            host,
            public_bucket_url,
            public_host,
        })
    }

    /// The same store with its object PUTs proven as `payload` says.
    pub fn with_payload_check(mut self, payload: PayloadCheck) -> Self {
        self.payload = resolve(payload, &self.bucket_url);
        self
    }

    /// The `x-amz-content-sha256` value and the `x-amz-checksum-crc32c` header (if any) that
    /// prove a body with these digests.
    fn body_proof(&self, body: &[u8], digest: &BodyDigest) -> (String, Option<String>) {
        match self.payload {
            PayloadCheck::Checksum => {
                let crc = digest.crc32c.unwrap_or_else(|| crc32c::crc32c(body));
                (UNSIGNED_PAYLOAD.to_owned(), Some(crc32c_header(crc)))
            }
            _ => (hex::encode(digest.sha256), None),
        }
    }
}

/// `Auto` made concrete for an endpoint: `Checksum` over `https`, `Signed` otherwise.
fn resolve(payload: PayloadCheck, endpoint: &Url) -> PayloadCheck {
    match payload {
        PayloadCheck::Auto if endpoint.scheme() == "https" => PayloadCheck::Checksum,
        PayloadCheck::Auto => PayloadCheck::Signed,
        chosen => chosen,
    }
}

/// The `x-amz-content-sha256` value of a body sent with [`PayloadCheck::Checksum`].
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Base64 of a big-endian CRC32C, as `x-amz-checksum-crc32c` carries it.
fn crc32c_header(crc: u32) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// When an object was written, from a listing's RFC 3339 time.
fn modified(time: Option<&str>) -> Option<std::time::SystemTime> {
    time::OffsetDateTime::parse(time?, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(std::time::SystemTime::from)
}

/// True if a multipart upload `initiated` (RFC 3339) at or before `cutoff`: one that may still
/// be running, or whose start the server does not say, is left alone.
fn started_by(initiated: Option<&str>, cutoff: time::OffsetDateTime) -> bool {
    initiated.is_some_and(|initiated| {
        time::OffsetDateTime::parse(initiated, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|started| started <= cutoff)
    })
}

#[async_trait]
impl ObjectStore for S3Store {
    #[tracing::instrument(name = "storage.stage", skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn stage(
        &self,
        prefix: &str,
        staged: &Staged,
        bytes: Bytes,
    ) -> Result<Staged, StorageError> {
        self.stage_bytes(prefix, staged, bytes).await
    }

    async fn unstage_replaced(&self, old: &Staged, new: &Staged) -> Result<(), StorageError> {
        self.unstage(old, new).await
    }

    #[tracing::instrument(name = "storage.staged_bytes", skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn staged_bytes(&self, prefix: &str, staged: &Staged) -> Result<Bytes, StorageError> {
        self.read_staged(prefix, staged).await
    }

    #[tracing::instrument(name = "storage.discard_staged", skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn discard_staged(&self, prefix: &str, staged: &Staged) -> Result<(), StorageError> {
        self.discard(prefix, staged).await
    }

    #[tracing::instrument(name = "storage.put", skip_all, fields(backend = "s3", key = %key))]
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        digest: &BodyDigest,
        content_type: &str,
    ) -> Result<(), StorageError> {
        validate_key(key)?;
        let (payload_hash, checksum) = self.body_proof(&bytes, digest);
        let mut headers = vec![("content-type", content_type)];
        headers.extend(
            checksum
                .as_deref()
                .map(|checksum| ("x-amz-checksum-crc32c", checksum)),
        );
        let response = self
            .send(
                Method::PUT,
                Resource::Object(key),
                &[],
                &headers,
                bytes,
                &payload_hash,
            )
            .await?;
        let code = response.status().as_u16();
        // Read the (small) answer so the connection can be reused.
        let _ = response.bytes().await;
        match code {
            200..=299 => Ok(()),
            code => Err(status("PUT", key, code)),
        }
    }

    fn checks_crc32c(&self) -> bool {
        self.payload == PayloadCheck::Checksum
    }

    #[tracing::instrument(name = "storage.put_streamed", skip_all, fields(backend = "s3", key = %key))]
    async fn put_streamed(
        &self,
        key: &str,
        size: u64,
        content_type: &str,
        body: StreamedBody,
        within: Duration,
    ) -> Result<(), StorageError> {
        self.stream_put(key, size, content_type, body, within).await
    }

    #[tracing::instrument(name = "storage.put_appended", skip_all, fields(backend = "s3", key = %key))]
    async fn put_appended(
        &self,
        key: &str,
        base: &str,
        base_len: u64,
        tail: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        validate_key(key)?;
        validate_key(base)?;
        if base_len >= MIN_PART_BYTES {
            return self.multipart_append(key, base, tail, content_type).await;
        }
        // Under the part minimum: one PUT of both (the base is small, and bounded).
        let old = match self.get(base).await? {
            Some(old) if old.len() as u64 == base_len => old,
            _ => return Err(StorageError::BaseChanged(base.to_owned())),
        };
        let mut whole = Vec::with_capacity(old.len() + tail.len());
        whole.extend_from_slice(&old);
        whole.extend_from_slice(&tail);
        // The SHA-256 a signed PUT needs; a checksummed PUT takes its CRC32C from the body.
        let digest = BodyDigest {
            sha256: <sha2::Sha256 as sha2::Digest>::digest(&whole).into(),
            crc32c: None,
        };
        self.put(key, Bytes::from(whole), &digest, content_type)
            .await
    }

    #[tracing::instrument(name = "storage.get", skip_all, fields(backend = "s3", key = %key))]
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        validate_key(key)?;
        let response = self
            .send_empty(Method::GET, Resource::Object(key), &[], &[])
            .await?;
        match response.status().as_u16() {
            200..=299 => response
                .bytes()
                .await
                .map(Some)
                .map_err(|err| StorageError::Unavailable(format!("GET {key}: {err}"))),
            404 => Ok(None),
            code => Err(status("GET", key, code)),
        }
    }

    #[tracing::instrument(name = "storage.delete", skip_all, fields(backend = "s3", key = %key))]
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        let response = self
            .send_empty(Method::DELETE, Resource::Object(key), &[], &[])
            .await?;
        gone_is_done(&response, "DELETE", key)
    }

    #[tracing::instrument(name = "storage.list", skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, StorageError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(token) = &token {
                query.push(("continuation-token", token));
            }
            let response = self
                .send_empty(Method::GET, Resource::Bucket, &query, &[])
                .await?;
            let (_, body) = answer(response, "ListObjectsV2", prefix, None).await?;
            let page: xml::ListBucketResult = xml::parse("ListObjectsV2", &body)?;
            out.extend(page.contents.into_iter().map(|object| ObjectEntry {
                modified: modified(object.last_modified.as_deref()),
                key: object.key,
                size: object.size,
            }));
            match page.next_continuation_token {
                Some(next) if page.is_truncated && token.as_ref() != Some(&next) => {
                    token = Some(next);
                }
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    #[tracing::instrument(name = "storage.url", skip_all, fields(backend = "s3", key = %key))]
    async fn url(&self, key: &str, ttl: Duration) -> Result<String, StorageError> {
        validate_key(key)?;
        let mut url = request::object_url(&self.public_bucket_url, key)?;
        let query = self.signer.presigned_get_query(
            url.path(),
            &self.public_host,
            ttl.as_secs().clamp(1, MAX_URL_TTL_SECONDS),
            &sigv4::amz_date(time::OffsetDateTime::now_utc()),
        );
        url.set_query(Some(&query));
        Ok(url.into())
    }

    async fn sweep(&self, age: Duration) -> Result<usize, StorageError> {
        // Multipart uploads left open (a report append or a large write interrupted by a
        // crash, or another tool's) cost storage until aborted.
        let cutoff = time::OffsetDateTime::now_utc() - age;
        let mut old = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", "")];
            if let Some((key, id)) = &markers {
                query.push(("key-marker", key));
                query.push(("upload-id-marker", id));
            }
            let response = self
                .send_empty(Method::GET, Resource::Bucket, &query, &[])
                .await?;
            let (_, body) = answer(response, "ListMultipartUploads", "bucket", None).await?;
            let page: xml::ListMultipartUploadsResult = xml::parse("ListMultipartUploads", &body)?;
            old.extend(
                page.uploads
                    .into_iter()
                    // A resumable upload's parts live as long as its session, which the
                    // session janitor ends.
                    .filter(|upload| !upload.key.starts_with(crate::storage::STAGING_PREFIX))
                    .filter(|upload| started_by(upload.initiated.as_deref(), cutoff)),
            );
            let next = page.next_key_marker.zip(page.next_upload_id_marker);
            match next {
                Some(next) if page.is_truncated && markers.as_ref() != Some(&next) => {
                    markers = Some(next);
                }
                _ => break,
            }
        }
        for upload in &old {
            self.abort(&upload.key, &upload.upload_id).await?;
        }
        Ok(old.len())
    }

    async fn check(&self) -> Result<(), StorageError> {
        let response = self
            .send_empty(Method::HEAD, Resource::Object("health-probe"), &[], &[])
            .await?;
        // The probe object need not exist: any answer but an error says the bucket is there.
        gone_is_done(&response, "HEAD", "health-probe")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uploads_started_before_the_cutoff_are_abandoned() {
        let cutoff = time::macros::datetime!(2026-12-02 05:00 UTC);
        assert!(started_by(Some("2026-12-02T04:59:59.000Z"), cutoff));
        assert!(started_by(Some("2026-12-02T05:00:00Z"), cutoff));
        assert!(
            !started_by(Some("2026-12-02T05:00:01.000Z"), cutoff),
            "still running"
        );
        assert!(
            !started_by(Some("yesterday"), cutoff),
            "unreadable: left alone"
        );
        assert!(!started_by(None, cutoff), "unknown: left alone");
    }

    #[test]
    fn the_checksum_header_is_the_base64_of_the_big_endian_crc32c() {
        // CRC32C("123456789") = 0xE3069283, the algorithm's check value.
        assert_eq!(crc32c_header(crc32c::crc32c(b"123456789")), "4waSgw==");
    }

    #[test]
    fn auto_checks_by_checksum_over_https_and_by_signature_over_http() {
        let https = Url::parse("https://s3.example/bucket").unwrap();
        let http = Url::parse("http://minio:9000/bucket").unwrap();
        assert_eq!(resolve(PayloadCheck::Auto, &https), PayloadCheck::Checksum);
        assert_eq!(resolve(PayloadCheck::Auto, &http), PayloadCheck::Signed);
        assert_eq!(resolve(PayloadCheck::Signed, &https), PayloadCheck::Signed);
        assert_eq!(
            resolve(PayloadCheck::Checksum, &http),
            PayloadCheck::Checksum
        );
    }
}
