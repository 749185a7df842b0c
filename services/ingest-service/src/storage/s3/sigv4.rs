//! AWS Signature Version 4: the `Authorization` header of every request the S3 backend sends,
//! and the query string of the presigned GET URLs it hands out.
//!
//! An object PUT is signed with the SHA-256 the service computed as the bytes arrived: with
//! `storage.payload = "signed"` the server checks the body against `x-amz-content-sha256`, which
//! is part of the signature; with `"checksum"` that header says `UNSIGNED-PAYLOAD` and a signed
//! `x-amz-checksum-crc32c` header is checked instead. Nothing here hashes a body again.

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

    /// The `Authorization` header of a request, and the signature it carries (which a streamed
    /// PUT's first chunk signature chains from). `canonical_uri` is the path exactly as sent
    /// (already percent-encoded); `canonical_query` the query string with its parameters
    /// percent-encoded and sorted by name (`""` for none); `headers` are the other signed
    /// headers (at least `host`). `x-amz-content-sha256: payload_hash` and
    /// `x-amz-date: amz_date` are signed too, and the request must carry them.
    pub fn authorization_and_signature(
        &self,
        method: &str,
        canonical_uri: &str,
        canonical_query: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
        amz_date: &str,
    ) -> (String, String) {
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
        let (scope, signature) = self.sign(&canonical_request, amz_date);
        let header = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        (header, signature)
    }

    /// The signer of the chunks of a streamed PUT sent at `amz_date` whose `Authorization`
    /// header carries `seed` (its signature).
    pub fn chunk_signer(&self, amz_date: &str, seed: String) -> ChunkSigner {
        let date = amz_date.get(..8).unwrap_or(amz_date);
        ChunkSigner {
            key: self.signing_key(date),
            scope: format!("{date}/{}/s3/aws4_request", self.region),
            amz_date: amz_date.to_owned(),
            previous: seed,
        }
    }

    /// The key of the day `date` (`YYYYMMDD`), in this region, for S3.
    fn signing_key(&self, date: &str) -> Vec<u8> {
        let key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let key = hmac(&key, self.region.as_bytes());
        let key = hmac(&key, b"s3");
        hmac(&key, b"aws4_request")
    }

    /// The query string of a presigned GET of `canonical_uri` (already percent-encoded) on
    /// `host`, valid `expires_seconds` from `amz_date`: only `host` is signed, the payload is not.
    pub fn presigned_get_query(
        &self,
        canonical_uri: &str,
        host: &str,
        expires_seconds: u64,
        amz_date: &str,
    ) -> String {
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let credential = format!("{}/{date}/{}/s3/aws4_request", self.access_key, self.region);
        // Sorted by name, as the canonical query must be.
        let query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={amz_date}\
             &X-Amz-Expires={expires_seconds}&X-Amz-SignedHeaders=host",
            encode_segment(&credential)
        );
        let canonical_request =
            format!("GET\n{canonical_uri}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let (_, signature) = self.sign(&canonical_request, amz_date);
        format!("{query}&X-Amz-Signature={signature}")
    }

    /// The credential scope and the signature of `canonical_request` at `amz_date`.
    fn sign(&self, canonical_request: &str, amz_date: &str) -> (String, String) {
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let key = self.signing_key(date);
        (scope, hex::encode(hmac(&key, string_to_sign.as_bytes())))
    }
}

/// Signs the chunks of one streamed PUT (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`): each chunk's
/// signature covers its SHA-256 and the signature before it, the first the request's.
pub struct ChunkSigner {
    key: Vec<u8>,
    scope: String,
    amz_date: String,
    previous: String,
}

impl ChunkSigner {
    /// The signature of the next chunk, whose bytes hash to `sha256` (the last chunk is empty).
    pub fn sign(&mut self, sha256: &[u8]) -> &str {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            super::request::EMPTY_SHA256,
            hex::encode(sha256)
        );
        self.previous = hex::encode(hmac(&self.key, string_to_sign.as_bytes()));
        &self.previous
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
        let (authorization, _) = signer.authorization_and_signature(
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

    /// The presigned URL example of the S3 documentation ("Authenticating Requests: Using Query
    /// Parameters").
    #[test]
    fn the_documented_presigned_url_example_gets_the_documented_signature() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let query = signer.presigned_get_query(
            "/test.txt",
            "examplebucket.s3.amazonaws.com",
            86_400,
            "20130524T000000Z",
        );
        assert_eq!(
            query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// The example of the S3 documentation "Signature Calculations for the Authorization
    /// Header: Transferring Payload in Multiple Chunks": a 66,560-byte object of `a`s sent as
    /// a 65,536-byte chunk, a 1,024-byte chunk and the empty last chunk.
    #[test]
    fn the_documented_chunked_upload_example_gets_the_documented_signatures() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let (_, seed) = signer.authorization_and_signature(
            "PUT",
            "/examplebucket/chunkObject.txt",
            "",
            &[
                ("Host", "s3.amazonaws.com"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("Content-Encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "66560"),
                ("Content-Length", "66824"),
            ],
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "20130524T000000Z",
        );
        assert_eq!(
            seed,
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
        );
        let mut chunks = signer.chunk_signer("20130524T000000Z", seed);
        let sha = |len: usize| Sha256::digest(vec![b'a'; len]).to_vec();
        assert_eq!(
            chunks.sign(&sha(65_536)),
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
        assert_eq!(
            chunks.sign(&sha(1_024)),
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        );
        assert_eq!(
            chunks.sign(&sha(0)),
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
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
