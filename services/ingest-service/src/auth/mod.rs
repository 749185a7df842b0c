//! Identity: bearer JWT verification (HS256 secret, RS256/ES256 public keys), the claims the
//! service reads, and dev token minting.

mod permissions;

pub use permissions::{
    ALL_WORKSPACES, Access, acting_owner, can_manage_workspace, can_read_usage, can_use_target,
};

use crate::configuration::AuthSettings;
use crate::error::IngestError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

/// Workspace admin roles that may act on every Concur target of their workspace.
pub const ADMIN_ROLES: [&str; 2] = ["company_admin", "web_services_admin"];
/// Role of internal services allowed to call `TargetRegistry`.
pub const SERVICE_ROLE: &str = "service";

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User ID.
    pub sub: String,
    /// Workspace (company) ID.
    pub ws: String,
    /// Roles, e.g. `company_admin`, `owner`, `staff`, `service`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions, e.g. `financial`.
    #[serde(default)]
    pub perms: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

impl Claims {
    /// Claims for `sub` in workspace `ws` with `roles` and `perms`, expiring `seconds` from now
    /// (negative: already expired).
    pub fn expiring_in(sub: &str, ws: &str, roles: &[&str], perms: &[&str], seconds: i64) -> Self {
        Claims {
            sub: sub.to_owned(),
            ws: ws.to_owned(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            perms: perms.iter().map(|perm| (*perm).to_owned()).collect(),
            exp: expires_in(seconds),
        }
    }

    /// True if the bearer has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// True if the bearer has permission `perm`.
    pub fn has_perm(&self, perm: &str) -> bool {
        self.perms.iter().any(|p| p == perm)
    }

    /// True if the bearer is a workspace admin.
    pub fn is_admin(&self) -> bool {
        ADMIN_ROLES.iter().any(|role| self.has_role(role))
    }
}

/// Verifies bearer tokens with the configured keys.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    leeway: u64,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<_> = self.keys.iter().map(|(alg, _)| alg).collect();
        f.debug_struct("Verifier")
            .field("algorithms", &algorithms)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier; fails if no key is configured or a PEM key does not parse.
    pub fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        let secret = settings.hs256_secret.expose_secret();
        if !secret.is_empty() {
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            ));
        }
        if !settings.rs256_public_key_pem.is_empty() {
            keys.push((
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(settings.rs256_public_key_pem.as_bytes())?,
            ));
        }
        if !settings.es256_public_key_pem.is_empty() {
            keys.push((
                Algorithm::ES256,
                DecodingKey::from_ec_pem(settings.es256_public_key_pem.as_bytes())?,
            ));
        }
        anyhow::ensure!(!keys.is_empty(), "no token verification key is configured");
        let configured = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        Ok(Self {
            keys,
            leeway: settings.leeway_seconds,
            issuer: configured(&settings.issuer),
            audience: configured(&settings.audience),
        })
    }

    /// Verifies an `authorization` value (`Bearer <jwt>` or `OAuth <jwt>`).
    pub fn verify_header(&self, value: Option<&str>) -> Result<Claims, IngestError> {
        let value = value.ok_or(IngestError::TokenMissing)?.trim();
        let token = ["Bearer ", "bearer ", "OAuth ", "oauth "]
            .iter()
            .find_map(|scheme| value.strip_prefix(scheme))
            .ok_or(IngestError::TokenInvalid)?;
        self.verify(token.trim())
    }

    /// Verifies a bare JWT: signature by a configured key of the token's algorithm, `exp`, `nbf`
    /// and, if configured, `iss` and `aud`.
    pub fn verify(&self, token: &str) -> Result<Claims, IngestError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| IngestError::TokenInvalid)?;
        let (alg, key) = self
            .keys
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .ok_or(IngestError::TokenInvalid)?;
        let mut validation = Validation::new(*alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(err) => match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(IngestError::TokenExpired),
                _ => Err(IngestError::TokenInvalid),
            },
        }
    }
}

/// Signs `claims` with an HS256 `secret` (the dev token command and tests).
pub fn mint_hs256(secret: &str, claims: &Claims) -> anyhow::Result<String> {
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Now plus `seconds`, as Unix seconds (for `exp`).
pub fn expires_in(seconds: i64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    u64::try_from(now + seconds).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secret: &str) -> AuthSettings {
        AuthSettings {
            hs256_secret: secret.into(),
            rs256_public_key_pem: String::new(),
            es256_public_key_pem: String::new(),
            leeway_seconds: 0,
            issuer: String::new(),
            audience: String::new(),
        }
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            ws: "w1".into(),
            roles: vec!["company_admin".into()],
            perms: vec![],
            exp,
        }
    }

    #[test]
    fn a_minted_token_verifies_with_both_schemes() {
        let verifier = Verifier::new(&settings("s")).unwrap();
        let token = mint_hs256("s", &claims(expires_in(60))).unwrap();
        let got = verifier
            .verify_header(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(got.sub, "u1");
        assert!(got.is_admin());
        assert!(
            verifier
                .verify_header(Some(&format!("OAuth {token}")))
                .is_ok()
        );
    }

    #[test]
    fn expired_wrong_key_and_missing_tokens_are_refused_with_distinct_reasons() {
        let verifier = Verifier::new(&settings("s")).unwrap();
        let expired = mint_hs256("s", &claims(expires_in(-60))).unwrap();
        let foreign = mint_hs256("other", &claims(expires_in(60))).unwrap();
        assert!(matches!(
            verifier.verify(&expired),
            Err(IngestError::TokenExpired)
        ));
        assert!(matches!(
            verifier.verify(&foreign),
            Err(IngestError::TokenInvalid)
        ));
        assert!(matches!(
            verifier.verify("garbage"),
            Err(IngestError::TokenInvalid)
        ));
        assert!(matches!(
            verifier.verify_header(None),
            Err(IngestError::TokenMissing)
        ));
        assert!(matches!(
            verifier.verify_header(Some("Basic abc")),
            Err(IngestError::TokenInvalid)
        ));
    }

    #[test]
    fn a_token_not_yet_valid_is_refused() {
        #[derive(Serialize)]
        struct Early {
            sub: &'static str,
            ws: &'static str,
            exp: u64,
            nbf: u64,
        }
        let verifier = Verifier::new(&settings("s")).unwrap();
        let early = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Early {
                sub: "u1",
                ws: "w1",
                exp: expires_in(48 * 3600),
                nbf: expires_in(24 * 3600),
            },
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert!(matches!(
            verifier.verify(&early),
            Err(IngestError::TokenInvalid)
        ));
    }

    #[test]
    fn a_configured_issuer_and_audience_are_required() {
        #[derive(Serialize)]
        struct WithIss {
            sub: &'static str,
            ws: &'static str,
            exp: u64,
            iss: &'static str,
            aud: &'static str,
        }
        let mut auth = settings("s");
        auth.issuer = "https://issuer".into();
        auth.audience = "imaging".into();
        let verifier = Verifier::new(&auth).unwrap();
        let token = |iss, aud| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &WithIss {
                    sub: "u1",
                    ws: "w1",
                    exp: expires_in(60),
                    iss,
                    aud,
                },
                &EncodingKey::from_secret(b"s"),
            )
            .unwrap()
        };
        assert!(verifier.verify(&token("https://issuer", "imaging")).is_ok());
        assert!(verifier.verify(&token("https://other", "imaging")).is_err());
        assert!(verifier.verify(&token("https://issuer", "other")).is_err());
    }

    #[test]
    fn a_token_with_alg_none_is_refused() {
        let verifier = Verifier::new(&settings("s")).unwrap();
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        let body = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims(expires_in(60))).unwrap(),
        );
        assert!(verifier.verify(&format!("{header}.{body}.")).is_err());
    }
}
