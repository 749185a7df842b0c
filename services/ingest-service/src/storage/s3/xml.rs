//! The XML answers of the S3 calls the backend makes, read with a real XML parser (entities,
//! CDATA and namespaces as the server writes them), into the few fields each call needs.

use super::super::StorageError;
use serde::Deserialize;

/// Parses an answer of `op`; an unreadable answer is the server's fault (retryable).
pub fn parse<T: serde::de::DeserializeOwned>(op: &str, body: &str) -> Result<T, StorageError> {
    quick_xml::de::from_str(body)
        .map_err(|err| StorageError::Unavailable(format!("{op}: unreadable answer: {err}")))
}

/// True if `body` is an S3 error document (`<Error>` as its root element), which
/// `CompleteMultipartUpload` and `UploadPartCopy` may send with status 200.
pub fn is_error(body: &str) -> bool {
    #[derive(Deserialize)]
    struct Error {
        #[serde(rename = "Code")]
        code: String,
    }
    // Only a document whose root is `Error` deserializes here (quick-xml ignores the root's
    // name, so it is checked first).
    root_name(body).as_deref() == Some("Error")
        && quick_xml::de::from_str::<Error>(body).is_ok_and(|e| !e.code.is_empty())
}

/// The name of the root element, after the declaration and any comments.
fn root_name(body: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(start) | quick_xml::events::Event::Empty(start) => {
                return Some(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// `CreateMultipartUpload`.
#[derive(Debug, Deserialize)]
pub struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    pub upload_id: String,
}

/// `UploadPartCopy`.
#[derive(Debug, Deserialize)]
pub struct CopyPartResult {
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// `ListObjectsV2`: one page.
#[derive(Debug, Deserialize)]
pub struct ListBucketResult {
    #[serde(rename = "Contents", default)]
    pub contents: Vec<Object>,
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(rename = "NextContinuationToken", default)]
    pub next_continuation_token: Option<String>,
}

/// One object of a listing.
#[derive(Debug, Deserialize)]
pub struct Object {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "LastModified", default)]
    pub last_modified: Option<String>,
}

/// `ListMultipartUploads`: one page.
#[derive(Debug, Deserialize)]
pub struct ListMultipartUploadsResult {
    #[serde(rename = "Upload", default)]
    pub uploads: Vec<Upload>,
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(rename = "NextKeyMarker", default)]
    pub next_key_marker: Option<String>,
    #[serde(rename = "NextUploadIdMarker", default)]
    pub next_upload_id_marker: Option<String>,
}

/// One multipart upload in progress.
#[derive(Debug, Deserialize)]
pub struct Upload {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "UploadId")]
    pub upload_id: String,
    #[serde(rename = "Initiated", default)]
    pub initiated: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_is_read_with_its_entities_and_namespace() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>w1/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>w1/a&amp;b.jpg</Key><LastModified>2026-12-02T05:00:00.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>434234</Size>
    <StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key><![CDATA[w1/<c>.pdf]]></Key><Size>7</Size></Contents>
</ListBucketResult>"#;
        let page: ListBucketResult = parse("ListObjectsV2", body).unwrap();
        assert!(page.is_truncated);
        assert_eq!(
            page.next_continuation_token.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        assert_eq!(page.contents.len(), 2);
        assert_eq!(page.contents[0].key, "w1/a&b.jpg");
        assert_eq!(page.contents[0].size, 434_234);
        assert_eq!(
            page.contents[0].last_modified.as_deref(),
            Some("2026-12-02T05:00:00.000Z")
        );
        assert_eq!(page.contents[1].key, "w1/<c>.pdf");
        let empty: ListBucketResult = parse(
            "ListObjectsV2",
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .unwrap();
        assert!(empty.contents.is_empty() && !empty.is_truncated);
    }

    #[test]
    fn upload_ids_etags_and_uploads_in_progress_are_read() {
        let created: InitiateMultipartUploadResult = parse(
            "CreateMultipartUpload",
            "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket>\
             <Key>k</Key><UploadId>VXBsb2FkIElE&amp;x</UploadId></InitiateMultipartUploadResult>",
        )
        .unwrap();
        assert_eq!(created.upload_id, "VXBsb2FkIElE&x");
        let copied: CopyPartResult = parse(
            "UploadPartCopy",
            "<CopyPartResult><LastModified>2026-12-02T05:00:00Z</LastModified>\
             <ETag>&quot;b54357faf0632cce46e942fa68356b38&quot;</ETag></CopyPartResult>",
        )
        .unwrap();
        assert_eq!(copied.etag, "\"b54357faf0632cce46e942fa68356b38\"");
        let uploads: ListMultipartUploadsResult = parse(
            "ListMultipartUploads",
            "<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>\
             <Upload><Key>w1/r.pdf</Key><UploadId>u1</UploadId>\
             <Initiated>2026-12-01T00:00:00.000Z</Initiated></Upload>\
             <Upload><Key>w1/s.pdf</Key><UploadId>u2</UploadId></Upload>\
             </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert_eq!(uploads.uploads.len(), 2);
        assert_eq!(uploads.uploads[0].upload_id, "u1");
        assert_eq!(uploads.uploads[1].initiated, None);
    }

    #[test]
    fn an_error_document_is_told_from_an_answer_that_mentions_errors() {
        assert!(is_error(
            "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>x</Message></Error>"
        ));
        assert!(!is_error(
            "<CompleteMultipartUploadResult><Key>Error</Key><ETag>&quot;&lt;Error&gt;&quot;</ETag>\
             </CompleteMultipartUploadResult>"
        ));
        assert!(!is_error(""));
        assert!(parse::<CopyPartResult>("UploadPartCopy", "<CopyPartResult>").is_err());
    }
}
