//! AWS Signature Version 4 in the `Authorization` header, for the object PUT.
//!
//! `rust-s3` hashes a PUT body twice with SHA-256 (once to sign, once for the header) and once
//! with MD5 (`Content-MD5`); on 9 MB uploads that was about a quarter of the service's CPU in
//! the upload benchmark. The S3 backend signs its PUTs here instead, with the SHA-256 the service
//! computed as the bytes arrived: with `storage.payload = "signed"` the server checks the body against
//! `x-amz-content-sha256`, which is part of the signature; with `"checksum"` that header says
//! `UNSIGNED-PAYLOAD` and a signed `x-amz-checksum-crc32c` header is checked instead.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

type HmacSha256 = Hmac<Sha256>;

/// Signs requests to S3 in one region with one key pair.
#[derive(Clone)]
pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// `x-amz-date` for `at`: `YYYYMMDD'T'HHMMSS'Z'`.
pub fn amz_date(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.format(format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap_or_default()
}

/// Hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `segment` percent-encoded for a canonical URI: everything but `A-Za-z0-9-._~`.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl Signer {
    /// A signer for `region` with the given key pair.
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Self {
        Signer {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
        }
    }

    /// The `Authorization` header of a request. `canonical_uri` is the path exactly as sent
    /// (already percent-encoded); `canonical_query` the query string with its parameters
    /// percent-encoded and sorted by name (`""` for none); `headers` are the other signed
    /// headers (at least `host`). `x-amz-content-sha256: payload_hash` and
    /// `x-amz-date: amz_date` are signed too, and the request must carry them.
    pub fn authorization(
        &self,
        method: &str,
        canonical_uri: &str,
        canonical_query: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
        amz_date: &str,
    ) -> String {
        let amz = [
            ("x-amz-content-sha256", payload_hash),
            ("x-amz-date", amz_date),
        ];
        let mut headers: Vec<(String, &str)> = headers
            .iter()
            .chain(&amz)
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
            .collect();
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let signed_headers = headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_request = format!(
            "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        );
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let key = hmac(&key, self.region.as_bytes());
        let key = hmac(&key, b"s3");
        let key = hmac(&key, b"aws4_request");
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "GET Object" example of the S3 documentation ("Signature Calculations for the
    /// Authorization Header: Transferring Payload in a Single Chunk").
    #[test]
    fn the_documented_get_object_example_gets_the_documented_signature() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let empty = sha256_hex(b"");
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let authorization = signer.authorization(
            "GET",
            "/test.txt",
            "",
            &[
                ("Range", "bytes=0-9"),
                ("Host", "examplebucket.s3.amazonaws.com"),
            ],
            &empty,
            "20130524T000000Z",
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn dates_and_path_segments_are_written_as_s3_expects() {
        let at = OffsetDateTime::from_unix_timestamp(1_369_353_600).expect("a valid time");
        assert_eq!(amz_date(at), "20130524T000000Z");
        assert_eq!(encode_segment("abc$1.jpg"), "abc%241.jpg");
        assert_eq!(encode_segment("a b~_-"), "a%20b~_-");
    }
}
