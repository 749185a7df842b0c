//! Webhooks of a workspace, managed by the workspace's service token: registered (the URL
//! checked, a secret made if none was given), listed, removed, and their deliveries read.

use super::{Ingestor, target};
use crate::auth::{self, Claims};
use crate::error::IngestError;
use crate::events::webhooks::{SECRET_PREFIX, secret_key};
use crate::state::{HookDelivery, WebhookRecord, now_millis};
use base64::Engine;

/// Webhooks one workspace may have.
pub const MAX_WEBHOOKS: usize = 10;
/// Longest webhook URL, in bytes.
const MAX_URL: usize = 2048;
/// Deliveries `ListDeliveries` gives by default, and at most.
const DEFAULT_DELIVERIES: usize = 100;
const MAX_DELIVERIES: usize = 1000;

fn invalid(field: &'static str, message: &str) -> IngestError {
    IngestError::InvalidRequest {
        field,
        message: message.to_owned(),
    }
}

/// Checks a webhook URL: `http` or `https`, a host, no credentials, at most 2,048 bytes.
fn check_url(url: &str) -> Result<(), IngestError> {
    if url.len() > MAX_URL {
        return Err(invalid("url", "the URL is over 2,048 bytes"));
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|_| invalid("url", "the URL is not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("url", "the URL must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "the URL has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("url", "the URL must not carry credentials"));
    }
    Ok(())
}

/// A new secret: `whsec_` and 32 random bytes in base64.
fn new_secret() -> String {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

impl Ingestor {
    fn check_workspace(claims: &Claims, workspace: &str) -> Result<(), IngestError> {
        if !target::valid_id(workspace) {
            return Err(IngestError::InvalidId("workspace_id"));
        }
        auth::can_manage_workspace(claims, workspace)
    }

    /// Registers a webhook of `workspace` for `url`, signed with `secret` (a new one if empty).
    pub async fn register_webhook(
        &self,
        claims: &Claims,
        workspace: &str,
        url: &str,
        secret: &str,
    ) -> Result<WebhookRecord, IngestError> {
        Self::check_workspace(claims, workspace)?;
        check_url(url)?;
        let secret = if secret.is_empty() {
            new_secret()
        } else {
            match secret_key(secret) {
                Some(key) if (24..=64).contains(&key.len()) => secret.to_owned(),
                _ => {
                    return Err(invalid(
                        "secret",
                        "the secret must be whsec_ and 24 to 64 bytes in base64",
                    ));
                }
            }
        };
        let hook = WebhookRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            workspace: workspace.to_owned(),
            url: url.to_owned(),
            secret,
            created_ms: now_millis(),
        };
        if !self.catalog.put_webhook(&hook, MAX_WEBHOOKS).await? {
            return Err(invalid(
                "workspace_id",
                "the workspace has 10 webhooks already; remove one first",
            ));
        }
        Ok(hook)
    }

    /// The webhooks of `workspace`.
    pub async fn list_webhooks(
        &self,
        claims: &Claims,
        workspace: &str,
    ) -> Result<Vec<WebhookRecord>, IngestError> {
        Self::check_workspace(claims, workspace)?;
        Ok(self.catalog.webhooks(workspace).await?)
    }

    /// Removes a webhook of `workspace` with what it had waiting.
    pub async fn remove_webhook(
        &self,
        claims: &Claims,
        workspace: &str,
        id: &str,
    ) -> Result<(), IngestError> {
        Self::check_workspace(claims, workspace)?;
        if !target::valid_id(id) || !self.catalog.remove_webhook(workspace, id).await? {
            return Err(IngestError::TargetNotFound("webhook"));
        }
        Ok(())
    }

    /// A webhook's deliveries: those waiting, then the settled ones, newest first.
    pub async fn list_deliveries(
        &self,
        claims: &Claims,
        workspace: &str,
        id: &str,
        limit: i32,
    ) -> Result<Vec<HookDelivery>, IngestError> {
        Self::check_workspace(claims, workspace)?;
        let limit = match usize::try_from(limit) {
            Err(_) => return Err(invalid("limit", "the limit must not be negative")),
            Ok(0) => DEFAULT_DELIVERIES,
            Ok(limit) => limit.min(MAX_DELIVERIES),
        };
        let known = self
            .catalog
            .webhooks(workspace)
            .await?
            .iter()
            .any(|hook| hook.id == id);
        if !known {
            return Err(IngestError::TargetNotFound("webhook"));
        }
        Ok(self.catalog.deliveries(workspace, id, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_http_with_a_host_and_no_credentials() {
        assert!(check_url("https://hooks.example.com/receipts").is_ok());
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(2048))).is_err());
        let secret = new_secret();
        assert_eq!(secret_key(&secret).unwrap().len(), 32);
    }
}
