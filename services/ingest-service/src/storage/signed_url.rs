//! HMAC-SHA256 signed, expiring URLs for the filesystem backend's file server.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks `(key, expires)` pairs.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    /// A signer for `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, key: &str, expires: u64) -> HmacSha256 {
        // Hmac accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// Hex signature of `key` valid until `expires` (Unix seconds).
    pub fn sign(&self, key: &str, expires: u64) -> String {
        hex::encode(self.mac(key, expires).finalize().into_bytes())
    }

    /// True if `signature` is valid for `key` and `expires` has not passed at `now`.
    pub fn verify(&self, key: &str, expires: u64, signature: &str, now: u64) -> bool {
        let Ok(raw) = hex::decode(signature) else {
            return false;
        };
        now <= expires && self.mac(key, expires).verify_slice(&raw).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::UrlSigner;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_until_it_expires() {
        let signer = UrlSigner::new(b"k");
        let sig = signer.sign("a/b.jpg", 100);
        assert!(signer.verify("a/b.jpg", 100, &sig, 99));
        assert!(!signer.verify("a/b.jpg", 100, &sig, 101));
        assert!(!signer.verify("a/c.jpg", 100, &sig, 99));
        assert!(!signer.verify("a/b.jpg", 101, &sig, 99));
        assert!(!UrlSigner::new(b"other").verify("a/b.jpg", 100, &sig, 99));
    }
}
