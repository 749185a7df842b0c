//! Settings: built-in defaults, then an optional TOML file, then `APP__SECTION__KEY` environment
//! variables. Tests build [`Settings`] values directly and never touch the process environment.

use secrecy::SecretString;
use serde::Deserialize;
use std::path::PathBuf;

/// Everything the ingest service can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Listening addresses.
    pub server: ServerSettings,
    /// Where the bytes go.
    pub storage: StorageSettings,
    /// Where quota counters, targets and image records live.
    pub state: StateSettings,
    /// Token verification.
    pub auth: AuthSettings,
    /// Upload limits.
    pub limits: LimitSettings,
}

/// Listening addresses and timing.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// gRPC listen address (`host:port`; port 0 picks a free one).
    pub grpc_addr: String,
    /// HTTP listen address of the signed-URL file server (filesystem storage only).
    pub files_addr: String,
    /// Base URL clients use to reach the file server; empty = `http://{files_addr}`.
    pub files_public_url: String,
    /// Lifetime of the expiring URLs handed out by `GetImage`, in seconds.
    pub url_ttl_seconds: u64,
    /// How long an upload waits for a busy target (report append, entry attach) before `BUSY`.
    pub lock_wait_seconds: u64,
    /// After SIGTERM, how long in-flight requests may take before the process exits anyway.
    pub drain_seconds: u64,
}

/// Object storage backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StorageSettings {
    /// Local filesystem (the embedded default).
    Filesystem {
        /// Root directory for objects.
        root: PathBuf,
        /// Key used to sign file URLs. Dev default only; set your own in production. Never
        /// printed (`Debug` shows `[REDACTED]`).
        url_signing_key: SecretString,
    },
    /// S3-compatible server (MinIO), path-style addressing, SigV4.
    S3 {
        /// Endpoint URL, e.g. `http://minio:9000`.
        endpoint: String,
        /// Region name sent in signatures.
        region: String,
        /// Bucket name.
        bucket: String,
        /// Access key ID.
        access_key: String,
        /// Secret access key (never printed).
        secret_key: SecretString,
        /// Endpoint used in presigned URLs handed to clients; empty = `endpoint`.
        #[serde(default)]
        public_endpoint: String,
    },
}

/// Quota and catalog backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StateSettings {
    /// A JSON file on local disk (the embedded default), rewritten atomically on each change.
    Embedded {
        /// Path of the state file.
        path: PathBuf,
    },
    /// Redis.
    Redis {
        /// Connection URL, e.g. `redis://127.0.0.1:6379/0`.
        url: String,
        /// Prefix of every key this service writes.
        #[serde(default = "default_redis_prefix")]
        key_prefix: String,
    },
}

fn default_redis_prefix() -> String {
    "imaging:".to_owned()
}

/// Token verification keys.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// HS256 shared secret; empty disables HS256. Never printed.
    pub hs256_secret: SecretString,
    /// PEM RSA public key for RS256; empty disables RS256.
    pub rs256_public_key_pem: String,
    /// PEM EC (P-256) public key for ES256; empty disables ES256.
    pub es256_public_key_pem: String,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_seconds: u64,
}

/// Upload limits.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Largest upload in bytes.
    pub max_upload_bytes: u64,
    /// Largest chunk in a gRPC upload stream, in bytes.
    pub max_chunk_bytes: usize,
    /// Largest decoded image, in pixels (decompression-bomb guard).
    pub max_pixels: u64,
    /// Long edge of converted WebP images, in pixels.
    pub webp_max_edge: u32,
    /// Lossy WebP quality (0-100).
    pub webp_quality: f32,
    /// Quota of a workspace that has no override, in bytes.
    pub default_quota_bytes: u64,
    /// Uploads processed at once; more are refused at once with `OVERLOADED` (load shedding).
    pub max_in_flight_uploads: usize,
}

/// The dev-only HS256 secret used when nothing is configured. Never use it in production.
pub const DEV_HS256_SECRET: &str = "dev-only-secret-change-me";

/// Built-in defaults: the embedded mode (filesystem storage, embedded state) under `./data`.
const DEFAULTS: &str = r#"
[server]
grpc_addr = "127.0.0.1:50051"
files_addr = "127.0.0.1:8081"
files_public_url = ""
url_ttl_seconds = 900
lock_wait_seconds = 30
drain_seconds = 30

[storage]
backend = "filesystem"
root = "data/objects"
url_signing_key = "dev-only-url-signing-key-change-me"

[state]
backend = "embedded"
path = "data/state.json"

[auth]
hs256_secret = "dev-only-secret-change-me"
rs256_public_key_pem = ""
es256_public_key_pem = ""
leeway_seconds = 5

[limits]
max_upload_bytes = 10485760
max_chunk_bytes = 1048576
max_pixels = 50000000
webp_max_edge = 2048
webp_quality = 80.0
default_quota_bytes = 1073741824
max_in_flight_uploads = 64
"#;

/// Loads settings: defaults, then the TOML file named by `file` (if any), then `APP__*` variables.
pub fn load(file: Option<&std::path::Path>) -> Result<Settings, config::ConfigError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    builder
        .add_source(
            config::Environment::with_prefix("APP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?
        .try_deserialize()
}

impl Settings {
    /// The built-in defaults alone, rooted at `data_dir` (used by tests and the quick start).
    pub fn embedded(data_dir: &std::path::Path) -> Settings {
        let mut settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("built-in defaults are valid");
        settings.storage = StorageSettings::Filesystem {
            root: data_dir.join("objects"),
            url_signing_key: SecretString::from("dev-only-url-signing-key-change-me"),
        };
        settings.state = StateSettings::Embedded {
            path: data_dir.join("state.json"),
        };
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_describe_the_embedded_mode_with_a_ten_megabyte_limit() {
        let settings = Settings::embedded(std::path::Path::new("/tmp/x"));
        assert_eq!(settings.limits.max_upload_bytes, 10_485_760);
        assert!(matches!(
            settings.storage,
            StorageSettings::Filesystem { .. }
        ));
        assert!(matches!(settings.state, StateSettings::Embedded { .. }));
        assert_eq!(settings.auth.hs256_secret.expose_secret(), DEV_HS256_SECRET);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut settings = Settings::embedded(std::path::Path::new("/tmp/x"));
        settings.auth.hs256_secret = SecretString::from("hs-secret-value");
        settings.storage = StorageSettings::S3 {
            endpoint: "http://s3".into(),
            region: "r".into(),
            bucket: "b".into(),
            access_key: "AKIA".into(),
            secret_key: SecretString::from("s3-secret-value"),
            public_endpoint: String::new(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hs-secret-value"), "{shown}");
        assert!(!shown.contains("s3-secret-value"), "{shown}");
        let embedded = format!("{:?}", Settings::embedded(std::path::Path::new("/tmp/x")));
        assert!(!embedded.contains("dev-only-url-signing-key"), "{embedded}");
    }
}
