//! An append to a large report without reading it: a multipart upload whose first part the
//! server copies from the existing object (`UploadPartCopy`) and whose second is the new bytes.

use super::super::StorageError;
use super::request::{Resource, answer};
use super::{S3Store, sigv4, xml};
use bytes::Bytes;
use reqwest::Method;

/// The smallest part of a multipart upload but the last (S3's rule): an append to a report
/// smaller than this is one PUT of the report and the new bytes.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

impl S3Store {
    /// `base` copied by the server as part 1, `tail` sent as part 2, under `key`.
    pub(super) async fn multipart_append(
        &self,
        key: &str,
        base: &str,
        tail: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let upload_id = self.create_multipart(key, content_type).await?;
        let parts = async {
            let encoded: Vec<String> = base.split('/').map(sigv4::encode_segment).collect();
            let source = format!(
                "/{}/{}",
                sigv4::encode_segment(&self.bucket),
                encoded.join("/")
            );
            let copied = self
                .send_empty(
                    Method::PUT,
                    Resource::Object(key),
                    &[("partNumber", "1"), ("uploadId", &upload_id)],
                    &[("x-amz-copy-source", &source)],
                )
                .await?;
            let (_, body) = answer(copied, "UploadPartCopy", key, Some(base)).await?;
            let first = xml::parse::<xml::CopyPartResult>("UploadPartCopy", &body)?.etag;
            let second = self.upload_part(key, &upload_id, 2, tail).await?;
            self.complete_multipart(key, &upload_id, &[(1, first), (2, second)])
                .await
        }
        .await;
        if parts.is_err() {
            // Best effort: an upload left behind is aborted by the janitor's sweep.
            let _ = self.abort(key, &upload_id).await;
        }
        parts
    }

    /// Starts a multipart upload of `key`; its upload ID.
    pub(super) async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<String, StorageError> {
        let created = self
            .send_empty(
                Method::POST,
                Resource::Object(key),
                &[("uploads", "")],
                &[("content-type", content_type)],
            )
            .await?;
        let (_, body) = answer(created, "CreateMultipartUpload", key, None).await?;
        Ok(
            xml::parse::<xml::InitiateMultipartUploadResult>("CreateMultipartUpload", &body)?
                .upload_id,
        )
    }

    /// Sends part `number` of the upload `upload_id`; its ETag.
    pub(super) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        bytes: Bytes,
    ) -> Result<String, StorageError> {
        // The part's body is signed with its SHA-256 whatever `payload` says: a part's
        // checksum header would need the algorithm named when the upload was created and
        // every part's checksum listed again at completion.
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let number = number.to_string();
        let sent = self
            .send(
                Method::PUT,
                Resource::Object(key),
                &[("partNumber", &number), ("uploadId", upload_id)],
                &[],
                bytes,
                &sha256,
            )
            .await?;
        let (headers, _) = answer(sent, "UploadPart", key, None).await?;
        headers
            .get(http::header::ETAG)
            .and_then(|etag| etag.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Unavailable(format!("UploadPart {key}: no ETag")))
    }

    /// Completes the upload `upload_id` of `key` from `parts` (number, ETag), in order.
    pub(super) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), StorageError> {
        let listed: String = parts
            .iter()
            .map(|(number, etag)| {
                format!(
                    "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                    escape(etag)
                )
            })
            .collect();
        let complete = format!("<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>");
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(complete.as_bytes()));
        let completed = self
            .send(
                Method::POST,
                Resource::Object(key),
                &[("uploadId", upload_id)],
                &[("content-type", "application/xml")],
                Bytes::from(complete),
                &hash,
            )
            .await?;
        answer(completed, "CompleteMultipartUpload", key, None).await?;
        Ok(())
    }

    /// Aborts the multipart upload `upload_id` of `key`.
    pub(super) async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        let response = self
            .send_empty(
                Method::DELETE,
                Resource::Object(key),
                &[("uploadId", upload_id)],
                &[],
            )
            .await?;
        super::request::gone_is_done(&response, "AbortMultipartUpload", key)
    }
}

/// `text` escaped for XML character data (an ETag is quoted: `"..."`).
fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}
