//! One way of calling S3: a request to the bucket or one of its objects, signed with SigV4
//! ([`super::sigv4`]) and sent with `reqwest`; its answer checked by status and, where S3 may
//! answer 200 with an error document, by body.

use super::super::StorageError;
use super::{S3Store, sigv4, xml};
use bytes::Bytes;
use reqwest::{Method, Url};

/// SHA-256 of no bytes, in hex: the payload hash of a request without a body.
pub(super) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a request addresses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Resource<'a> {
    /// The bucket (listings).
    Bucket,
    /// An object (a valid key).
    Object(&'a str),
}

impl Resource<'_> {
    fn name(&self) -> &str {
        match self {
            Resource::Bucket => "bucket",
            Resource::Object(key) => key,
        }
    }
}

/// `base` (a bucket URL) followed by `key`, each segment percent-encoded.
pub(super) fn object_url(base: &Url, key: &str) -> Result<Url, StorageError> {
    let encoded: Vec<String> = key.split('/').map(sigv4::encode_segment).collect();
    let url = format!("{}/{}", base.as_str(), encoded.join("/"));
    Url::parse(&url).map_err(|err| StorageError::Backend(err.to_string()))
}

/// The error of an answer with status `code`: a server error may heal (retryable), a refusal
/// will not.
pub(super) fn status(op: &str, what: &str, code: u16) -> StorageError {
    let message = format!("{op} {what}: HTTP {code}");
    if code >= 500 {
        StorageError::Unavailable(message)
    } else {
        StorageError::Backend(message)
    }
}

/// `Ok` for a success or a 404 (the object, or upload, is already gone), else the error.
pub(super) fn gone_is_done(
    response: &reqwest::Response,
    op: &str,
    what: &str,
) -> Result<(), StorageError> {
    match response.status().as_u16() {
        200..=299 | 404 => Ok(()),
        code => Err(status(op, what, code)),
    }
}

/// What a request was signed with: its signature and its `x-amz-date`.
pub(super) struct Seed {
    pub(super) signature: String,
    pub(super) amz_date: String,
}

impl S3Store {
    /// Sends `method` to `resource` with the query parameters `query`, the extra signed
    /// `headers` and `body`, whose SHA-256 (or `UNSIGNED-PAYLOAD`) is `payload_hash`.
    pub(super) async fn send(
        &self,
        method: Method,
        resource: Resource<'_>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
        payload_hash: &str,
    ) -> Result<reqwest::Response, StorageError> {
        let (request, _) = self.signed(method.clone(), resource, query, headers, payload_hash)?;
        request.body(body).send().await.map_err(|err| {
            StorageError::Unavailable(format!("{method} {}: {err}", resource.name()))
        })
    }

    /// A request as [`S3Store::send`] makes it, without its body, and the signature of its
    /// `Authorization` header (the seed of a streamed PUT's chunk signatures) with its date.
    pub(super) fn signed(
        &self,
        method: Method,
        resource: Resource<'_>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        payload_hash: &str,
    ) -> Result<(reqwest::RequestBuilder, Seed), StorageError> {
        let mut url = match resource {
            Resource::Bucket => self.bucket_url.clone(),
            Resource::Object(key) => object_url(&self.bucket_url, key)?,
        };
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(name, value)| (sigv4::encode_segment(name), sigv4::encode_segment(value)))
            .collect();
        pairs.sort();
        let canonical_query = pairs
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&");
        url.set_query((!canonical_query.is_empty()).then_some(canonical_query.as_str()));
        let amz_date = sigv4::amz_date(time::OffsetDateTime::now_utc());
        let mut signed: Vec<(&str, &str)> = headers.to_vec();
        signed.push(("host", &self.host));
        let (authorization, signature) = self.signer.authorization_and_signature(
            method.as_str(),
            url.path(),
            &canonical_query,
            &signed,
            payload_hash,
            &amz_date,
        );
        let mut request = self
            .http
            .request(method, url)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", &amz_date)
            .header(http::header::AUTHORIZATION, authorization);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Ok((
            request,
            Seed {
                signature,
                amz_date,
            },
        ))
    }

    /// Sends a request without a body (see [`S3Store::send`]).
    pub(super) async fn send_empty(
        &self,
        method: Method,
        resource: Resource<'_>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, StorageError> {
        self.send(method, resource, query, headers, Bytes::new(), EMPTY_SHA256)
            .await
    }
}

/// The answer's headers and body if its status is a success and its body no error document,
/// else the matching error; `BaseChanged` for a 404 when `base` is given (the object an append
/// copies is gone).
pub(super) async fn answer(
    response: reqwest::Response,
    op: &str,
    what: &str,
    base: Option<&str>,
) -> Result<(reqwest::header::HeaderMap, String), StorageError> {
    let code = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|err| StorageError::Unavailable(format!("{op} {what}: {err}")))?;
    match (code, base) {
        // CompleteMultipartUpload and UploadPartCopy may fail with 200 and an error document.
        (200..=299, _) if xml::is_error(&body) => Err(StorageError::Unavailable(format!(
            "{op} {what}: error document"
        ))),
        (200..=299, _) => Ok((headers, body)),
        (404, Some(base)) => Err(StorageError::BaseChanged(base.to_owned())),
        (code, _) => Err(status(op, what, code)),
    }
}
