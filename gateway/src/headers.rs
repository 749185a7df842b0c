//! Reading request headers: the bearer token, the declared type and size, the idempotency key
//! and a client-supplied SHA-256 digest.

use crate::error::Failure;
use axum::http::{HeaderMap, header};
use base64::Engine;

/// `Idempotency-Key`: replays the first result for the same key and bytes.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// `Digest: sha-256=<base64>` (RFC 3230).
pub const DIGEST: &str = "digest";
/// `Content-Digest: sha-256=:<base64>:` (RFC 9530).
pub const CONTENT_DIGEST: &str = "content-digest";
/// `X-Content-SHA256: <hex>`.
pub const X_CONTENT_SHA256: &str = "x-content-sha256";

/// The JWT from `Authorization: Bearer <jwt>` or Concur's `Authorization: OAuth <jwt>`.
/// Anything else yields `None`: nothing is forwarded and the ingest service answers 401.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth");
    (known && !token.is_empty()).then_some(token)
}

/// The bearer token, or `TOKEN_MISSING` (401) before anything else of the request is read.
pub fn required_token(headers: &HeaderMap) -> Result<&str, crate::error::Failure> {
    bearer_token(headers).ok_or_else(|| {
        crate::error::Failure::local(
            imaging_proto::v1::ErrorReason::TokenMissing,
            "A bearer token is required.",
        )
    })
}

/// The media type of `Content-Type` without parameters, lower-cased (`""` if absent).
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(media_type)
        .unwrap_or_default()
}

/// `image/JPEG; charset=x` -> `image/jpeg`.
pub fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The type implied by a file name's extension, for parts sent without a useful type.
pub fn guess_media_type(file_name: &str) -> Option<&'static str> {
    let (_, extension) = file_name.rsplit_once('.')?;
    match extension.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" | "jpe" => Some("image/jpeg"),
        "png" => Some("image/png"),
        "webp" => Some("image/webp"),
        "pdf" => Some("application/pdf"),
        "heic" | "heif" => Some("image/heic"),
        "tif" | "tiff" => Some("image/tiff"),
        "gif" => Some("image/gif"),
        _ => None,
    }
}

/// `Content-Length`, if sent.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Failure> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Failure::invalid_request("Content-Length is not a number.")),
    }
}

/// `Idempotency-Key` (`""` if absent).
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, Failure> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(String::new()),
        Some(value) => value
            .to_str()
            .map(|key| key.trim().to_owned())
            .map_err(|_| Failure::invalid_request("Idempotency-Key must be visible ASCII.")),
    }
}

/// The SHA-256 the client declares, from `Digest`, `Content-Digest` or `X-Content-SHA256`.
/// A malformed value, or two headers that disagree, is an error; a `Digest` without a
/// `sha-256` entry is ignored. Returns an empty vector when no digest was sent.
pub fn client_sha256(headers: &HeaderMap) -> Result<Vec<u8>, Failure> {
    let mut found: Vec<[u8; 32]> = Vec::new();
    for value in headers.get_all(X_CONTENT_SHA256) {
        let text = value.to_str().map_err(|_| malformed(X_CONTENT_SHA256))?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut digest).map_err(|_| malformed(X_CONTENT_SHA256))?;
        found.push(digest);
    }
    for (name, wrapped) in [(DIGEST, false), (CONTENT_DIGEST, true)] {
        for value in headers.get_all(name) {
            let text = value.to_str().map_err(|_| malformed(name))?;
            for entry in text.split(',') {
                let Some((algorithm, encoded)) = entry.split_once('=') else {
                    return Err(malformed(name));
                };
                if !algorithm.trim().eq_ignore_ascii_case("sha-256") {
                    continue;
                }
                let encoded = encoded.trim();
                let encoded = if wrapped {
                    encoded
                        .strip_prefix(':')
                        .and_then(|rest| rest.strip_suffix(':'))
                        .ok_or_else(|| malformed(name))?
                } else {
                    encoded
                };
                found.push(decode_base64_sha256(encoded).ok_or_else(|| malformed(name))?);
            }
        }
    }
    match found.split_first() {
        None => Ok(Vec::new()),
        Some((first, rest)) if rest.iter().all(|other| other == first) => Ok(first.to_vec()),
        Some(_) => Err(Failure::invalid_request(
            "The digest headers disagree with each other.",
        )),
    }
}

fn decode_base64_sha256(encoded: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    bytes.try_into().ok()
}

fn malformed(name: &str) -> Failure {
    Failure::invalid_request(format!("The {name} header is not a valid SHA-256 digest."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// SHA-256 of "hello".
    const HELLO_HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const HELLO_B64: &str = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn no_digest_header_means_no_checksum() {
        assert!(client_sha256(&headers(&[])).unwrap().is_empty());
    }

    #[test]
    fn each_digest_header_form_is_read() {
        let expected = hex::decode(HELLO_HEX).unwrap();
        let content_digest = format!("sha-256=:{HELLO_B64}:");
        let digest = format!("SHA-256={HELLO_B64}");
        let with_md5 = format!("md5=XUFAKrxLKna5cZ2REBfFkg==, sha-256={HELLO_B64}");
        let upper_hex = HELLO_HEX.to_uppercase();
        for pairs in [
            vec![(X_CONTENT_SHA256, HELLO_HEX)],
            vec![(X_CONTENT_SHA256, upper_hex.as_str())],
            vec![(DIGEST, digest.as_str())],
            vec![(DIGEST, with_md5.as_str())],
            vec![(CONTENT_DIGEST, content_digest.as_str())],
            vec![(DIGEST, digest.as_str()), (X_CONTENT_SHA256, HELLO_HEX)],
        ] {
            assert_eq!(
                client_sha256(&headers(&pairs)).unwrap(),
                expected,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn a_digest_without_sha256_is_ignored() {
        let map = headers(&[(DIGEST, "md5=XUFAKrxLKna5cZ2REBfFkg==")]);
        assert!(client_sha256(&map).unwrap().is_empty());
    }

    #[test]
    fn malformed_or_conflicting_digests_are_bad_requests() {
        let short = &HELLO_HEX[..62];
        let other = "0".repeat(64);
        for pairs in [
            vec![(X_CONTENT_SHA256, "not-hex")],
            vec![(X_CONTENT_SHA256, short)],
            vec![(DIGEST, "sha-256=!!!")],
            vec![(DIGEST, "sha-256=aGVsbG8=")],
            vec![(DIGEST, "sha-256")],
            vec![(CONTENT_DIGEST, &format!("sha-256={HELLO_B64}"))],
            vec![
                (X_CONTENT_SHA256, HELLO_HEX),
                (X_CONTENT_SHA256, other.as_str()),
            ],
        ] {
            let error = client_sha256(&headers(&pairs)).unwrap_err();
            assert_eq!(
                error.reason(),
                Some(imaging_proto::v1::ErrorReason::InvalidRequest),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn oauth_and_bearer_tokens_are_forwarded_and_others_are_not() {
        let token =
            |value: &str| bearer_token(&headers(&[("authorization", value)])).map(str::to_owned);
        assert_eq!(token("OAuth abc.def.ghi").as_deref(), Some("abc.def.ghi"));
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(token("Basic dXNlcjpwdw=="), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("abc"), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn content_types_drop_parameters_and_file_names_imply_types() {
        let map = headers(&[("content-type", "Image/JPEG; charset=binary")]);
        assert_eq!(content_type(&map), "image/jpeg");
        assert_eq!(content_type(&HeaderMap::new()), "");
        assert_eq!(guess_media_type("scan.PDF"), Some("application/pdf"));
        assert_eq!(guess_media_type("a.b.webp"), Some("image/webp"));
        assert_eq!(guess_media_type("photo.jpg"), Some("image/jpeg"));
        assert_eq!(guess_media_type("noextension"), None);
        assert_eq!(guess_media_type("x.gif"), Some("image/gif"));
        assert_eq!(guess_media_type("IMG_0001.HEIC"), Some("image/heic"));
        assert_eq!(guess_media_type("scan.tif"), Some("image/tiff"));
        assert_eq!(guess_media_type("x.bmp"), None);
    }
}
