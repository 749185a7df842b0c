//! Where to connect and as whom: `--addr`/`--token`, else `IMAGING_ADDR`/`IMAGING_TOKEN`, else
//! the profile (`--profile`, `IMAGING_PROFILE`, `default`) of the config file
//! (`IMAGING_CONFIG`, else `$XDG_CONFIG_HOME/imaging/config.toml`, else
//! `~/.config/imaging/config.toml`), else the local service. An `https://` address is reached
//! over TLS, verified against the web's root certificates or `ca_file`.
//!
//! ```toml
//! [default]
//! addr = "http://127.0.0.1:50051"
//!
//! [staging]
//! addr = "https://imaging.staging.example.com"
//! token = "eyJ..."
//! ca_file = "/etc/ssl/staging-ca.pem"
//! ```

use anyhow::Context;
use serde::Deserialize;
use std::path::PathBuf;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The address used when nothing names one.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

/// One profile of the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// gRPC address of the service.
    pub addr: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// PEM file of the certificate authority that signed the service's certificate.
    pub ca_file: Option<PathBuf>,
}

/// The config file's path.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("IMAGING_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("imaging").join("config.toml"))
}

/// The profile `name` of the config file: empty if the file does not exist; an error if it
/// cannot be read, or a profile other than `default` is named and missing.
pub fn load(name: &str) -> anyhow::Result<Profile> {
    let Some(path) = config_path().filter(|path| path.exists()) else {
        anyhow::ensure!(
            name == "default",
            "profile {name}: no config file (IMAGING_CONFIG or ~/.config/imaging/config.toml)"
        );
        return Ok(Profile::default());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut profiles: std::collections::BTreeMap<String, Profile> =
        toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    match profiles.remove(name) {
        Some(profile) => Ok(profile),
        None if name == "default" => Ok(Profile::default()),
        None => anyhow::bail!("no profile {name} in {}", path.display()),
    }
}

/// A channel to `addr` (TLS for `https://`, trusting `ca_file` if given, else the web's roots).
pub async fn connect(addr: &str, ca_file: Option<&PathBuf>) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("{addr} is not a valid address"))?;
    if addr.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca_file) = ca_file {
            let pem =
                std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint.connect().await?)
}
