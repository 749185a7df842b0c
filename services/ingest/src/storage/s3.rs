//! S3 backend (MinIO or any S3-compatible server): path-style addressing, SigV4, presigned GET
//! URLs. Object PUTs are signed in [`super::sigv4`] and sent with `reqwest`, their bodies proven
//! as [`PayloadCheck`] says: by the SHA-256 the service already computed, in the signature, or
//! by a signed CRC32C header (over TLS). Everything else goes through `rust-s3`, which returns
//! 4xx/5xx as `Ok`, so every status is checked.

use super::sigv4::{self, Signer};
use super::{BodyDigest, ObjectEntry, ObjectStore, StorageError, validate_key};
use crate::configuration::PayloadCheck;
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Url;
use s3::creds::Credentials;
use s3::{Bucket, Region};
use std::time::Duration;

/// Time limit of one request to the S3 server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    bucket: Box<Bucket>,
    /// Same bucket addressed through the endpoint clients can reach, for presigning.
    public_bucket: Box<Bucket>,
    /// Client and signer of object PUTs.
    http: reqwest::Client,
    signer: Signer,
    /// `endpoint/bucket`, with the bucket name percent-encoded.
    bucket_url: Url,
    /// The `Host` header of requests to `bucket_url`.
    host: String,
    /// [`PayloadCheck::Signed`] or [`PayloadCheck::Checksum`] (`Auto` resolved).
    payload: PayloadCheck,
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
        .with_request_timeout(REQUEST_TIMEOUT)
        .map_err(|err| StorageError::Backend(err.to_string()))
}

/// `endpoint/bucket` and the `Host` header that goes with it.
fn bucket_url(endpoint: &str, name: &str) -> Result<(Url, String), StorageError> {
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
        let (bucket_url, host) = bucket_url(endpoint, bucket_name)?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| StorageError::Backend(err.to_string()))?;
        Ok(Self {
            bucket: bucket(bucket_name, endpoint, region, access_key, secret_key)?,
            public_bucket: bucket(bucket_name, public, region, access_key, secret_key)?,
            http,
            signer: Signer::new(access_key, secret_key, region),
            payload: resolve(PayloadCheck::Auto, &bucket_url),
            bucket_url,
            host,
        })
    }

    /// The same store with its object PUTs proven as `payload` says.
    pub fn with_payload_check(mut self, payload: PayloadCheck) -> Self {
        self.payload = resolve(payload, &self.bucket_url);
        self
    }

    /// The URL of `key` (a valid key), each segment percent-encoded.
    fn object_url(&self, key: &str) -> Result<Url, StorageError> {
        let encoded: Vec<String> = key.split('/').map(sigv4::encode_segment).collect();
        let url = format!("{}/{}", self.bucket_url.as_str(), encoded.join("/"));
        Url::parse(&url).map_err(|err| StorageError::Backend(err.to_string()))
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

/// The smallest part of a multipart upload but the last (S3's rule): an append to a report
/// smaller than this is one PUT of the report and the new bytes.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// SHA-256 of no bytes, in hex.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The text of the first `<tag>` element of an XML answer, with the entities S3 uses decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

impl S3Store {
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

    /// Sends a request signed with SigV4 to `key` with the query `query` (sorted by name).
    async fn send(
        &self,
        method: reqwest::Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
        payload_hash: &str,
    ) -> Result<reqwest::Response, StorageError> {
        let mut url = self.object_url(key)?;
        let canonical_query = query
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}={}",
                    sigv4::encode_segment(name),
                    sigv4::encode_segment(value)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        url.set_query((!canonical_query.is_empty()).then_some(canonical_query.as_str()));
        let amz_date = sigv4::amz_date(time::OffsetDateTime::now_utc());
        let mut signed: Vec<(&str, &str)> = headers.to_vec();
        signed.push(("host", &self.host));
        let authorization = self.signer.authorization(
            method.as_str(),
            url.path(),
            &canonical_query,
            &signed,
            payload_hash,
            &amz_date,
        );
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", amz_date)
            .header(http::header::AUTHORIZATION, authorization);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .body(body)
            .send()
            .await
            .map_err(|err| StorageError::Unavailable(format!("{method} {key}: {err}")))
    }

    /// The answer's body if its status is a success, else the matching error; `BaseChanged` for
    /// a 404 when `base` is given (the copied object is gone).
    async fn answer(
        response: reqwest::Response,
        op: &str,
        key: &str,
        base: Option<&str>,
    ) -> Result<(reqwest::header::HeaderMap, String), StorageError> {
        let code = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .text()
            .await
            .map_err(|err| StorageError::Unavailable(format!("{op} {key}: {err}")))?;
        match (code, base) {
            // CompleteMultipartUpload may fail with 200 and an error document.
            (200..=299, _) if !body.contains("<Error>") => Ok((headers, body)),
            (200..=299, _) => Err(StorageError::Unavailable(format!("{op} {key}: error body"))),
            (404, Some(base)) => Err(StorageError::BaseChanged(base.to_owned())),
            (code, _) => Err(status(op, key, code)),
        }
    }

    /// `base` copied by the server as part 1, `tail` sent as part 2, under `key`.
    async fn multipart_append(
        &self,
        key: &str,
        base: &str,
        tail: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        use reqwest::Method;
        let created = self
            .send(
                Method::POST,
                key,
                &[("uploads", "")],
                &[("content-type", content_type)],
                Bytes::new(),
                EMPTY_SHA256,
            )
            .await?;
        let (_, body) = Self::answer(created, "CreateMultipartUpload", key, None).await?;
        let upload_id = xml_text(&body, "UploadId").ok_or_else(|| {
            StorageError::Unavailable(format!("CreateMultipartUpload {key}: no UploadId"))
        })?;
        let parts = async {
            let encoded: Vec<String> = base.split('/').map(sigv4::encode_segment).collect();
            let source = format!(
                "/{}/{}",
                sigv4::encode_segment(&self.bucket.name()),
                encoded.join("/")
            );
            let copied = self
                .send(
                    Method::PUT,
                    key,
                    &[("partNumber", "1"), ("uploadId", &upload_id)],
                    &[("x-amz-copy-source", &source)],
                    Bytes::new(),
                    EMPTY_SHA256,
                )
                .await?;
            let (_, body) = Self::answer(copied, "UploadPartCopy", key, Some(base)).await?;
            let first = xml_text(&body, "ETag").ok_or_else(|| {
                StorageError::Unavailable(format!("UploadPartCopy {key}: no ETag"))
            })?;
            // The part's body is signed with its SHA-256 whatever `payload` says: a part's
            // checksum header would need the algorithm named when the upload was created and
            // every part's checksum listed again at completion. Appended parts are small.
            let tail_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tail));
            let sent = self
                .send(
                    Method::PUT,
                    key,
                    &[("partNumber", "2"), ("uploadId", &upload_id)],
                    &[],
                    tail,
                    &tail_sha256,
                )
                .await?;
            let (headers, _) = Self::answer(sent, "UploadPart", key, None).await?;
            let second = headers
                .get(http::header::ETAG)
                .and_then(|etag| etag.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| StorageError::Unavailable(format!("UploadPart {key}: no ETag")))?;
            let complete = format!(
                "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{first}</ETag></Part>\
                 <Part><PartNumber>2</PartNumber><ETag>{second}</ETag></Part></CompleteMultipartUpload>"
            );
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(complete.as_bytes()));
            let completed = self
                .send(
                    Method::POST,
                    key,
                    &[("uploadId", &upload_id)],
                    &[("content-type", "application/xml")],
                    Bytes::from(complete),
                    &hash,
                )
                .await?;
            Self::answer(completed, "CompleteMultipartUpload", key, None).await?;
            Ok(())
        }
        .await;
        if parts.is_err() {
            // Best effort: an upload left behind is aborted by the janitor's sweep.
            let _ = self
                .send(
                    Method::DELETE,
                    key,
                    &[("uploadId", &upload_id)],
                    &[],
                    Bytes::new(),
                    EMPTY_SHA256,
                )
                .await;
        }
        parts
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
                reqwest::Method::PUT,
                key,
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
                modified: time::OffsetDateTime::parse(
                    &object.last_modified,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
                .map(std::time::SystemTime::from),
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
        // Multipart uploads left open (a report append or a large write interrupted by a
        // crash, or another tool's) cost storage until aborted.
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

#[cfg(test)]
mod tests {
    use super::*;

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
