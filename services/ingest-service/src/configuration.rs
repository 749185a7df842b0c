//! Settings: built-in defaults, then an optional TOML file, then `APP__SECTION__KEY` environment
//! variables. Tests build [`Settings`] values directly and never touch the process environment.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::PathBuf;

/// Everything the ingest service can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Development mode: the built-in dev secrets fill in the HS256 secret (when no key of any
    /// kind is configured) and the URL signing key (when none is). Never for production.
    #[serde(default)]
    pub dev: bool,
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
    /// Events: the outbox every change writes, and where the relay delivers it.
    pub events: EventSettings,
}

/// Events of committed changes (CloudEvents JSON): written to an outbox in the change's own
/// atomic step, delivered by a relay in every replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Write events at all (off: no change writes one; for measuring what they cost).
    pub outbox: bool,
    /// NATS server URL (e.g. `nats://127.0.0.1:4222`); empty: events go to no broker.
    pub nats_url: String,
    /// The JetStream stream that takes the events.
    pub stream: String,
    /// Subjects are `{subject_prefix}.{workspace}.{type}` (the type without its `imaging.`).
    pub subject_prefix: String,
    /// Create the stream (subjects `{subject_prefix}.>`) if it does not exist.
    pub create_stream: bool,
    /// The stream's duplicate window, in seconds, when this service creates it: a redelivered
    /// event (same `Nats-Msg-Id`) within it is stored once.
    pub duplicate_window_seconds: u64,
    /// How often an idle relay looks for events, in ms (a change in this process wakes it).
    pub poll_millis: u64,
    /// Events read from an outbox at a time.
    pub batch: usize,
    /// A relay holds an outbox for this long at most, in seconds; one that died is taken over
    /// after it.
    pub lease_seconds: u64,
    /// Every replica relays the outboxes it wrote to at once; every this many seconds (and when it
    /// starts) it also looks at every outbox, for events a replica that died left.
    pub scan_seconds: u64,
    /// A publish not acknowledged by the broker within this is retried later, in ms.
    pub publish_timeout_millis: u64,
    /// A webhook request (connecting, sending, the answer's status) that takes longer fails, in
    /// ms.
    pub webhook_timeout_millis: u64,
    /// A webhook delivery is retried for this long after it was queued, then kept as failed, in
    /// seconds (24 hours).
    pub webhook_retry_seconds: u64,
    /// The wait before a webhook delivery's first retry, in ms; it doubles with every attempt.
    pub webhook_retry_base_millis: u64,
    /// The longest wait between attempts, in seconds.
    pub webhook_retry_max_seconds: u64,
    /// Webhooks one replica delivers to at once (each one request at a time, in order): a slow
    /// endpoint holds one of these for at most a timeout.
    pub webhook_concurrency: usize,
    /// Deliveries a webhook may have waiting; events past it are not queued for it (logged).
    pub webhook_max_queued: usize,
    /// Settled deliveries kept per webhook (`ListDeliveries`).
    pub webhook_log_size: usize,
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
    /// A target lock whose holder vanished expires after this, in ms. An expiry costs a retry,
    /// never data: image records change only by compare-and-set. (Idempotency claims are not
    /// target locks: they live as long as the key's result, 24 hours.)
    pub lock_ttl_millis: u64,
    /// After SIGTERM, how long in-flight requests may take before the process exits anyway.
    pub drain_seconds: u64,
    /// Connections open at once per listener (lowered to fit the open-files limit).
    pub max_connections: usize,
    /// A connection that moves no byte for this long is closed, in seconds.
    pub idle_timeout_seconds: u64,
    /// HTTP/1 (gRPC-Web, file server): the request head must arrive within this, in seconds.
    pub header_read_timeout_seconds: u64,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 keep-alive ping period, in seconds.
    pub keepalive_interval_seconds: u64,
    /// HTTP/2 keep-alive: an unanswered ping closes the connection after this, in seconds.
    pub keepalive_timeout_seconds: u64,
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
        /// How an object PUT proves its body (see [`PayloadCheck`]).
        #[serde(default)]
        payload: PayloadCheck,
    },
}

/// How the S3 backend's object PUTs prove their bodies to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadCheck {
    /// `checksum` for an `https` endpoint, `signed` for a plain `http` one.
    #[default]
    Auto,
    /// The body's SHA-256 is part of the signature (`x-amz-content-sha256`): the server hashes
    /// the body again to check it. Tamper-proof without TLS.
    Signed,
    /// The signature leaves the body out (`UNSIGNED-PAYLOAD`) and a signed
    /// `x-amz-checksum-crc32c` header lets the server check the body cheaply; TLS keeps it from
    /// being altered on the way. What AWS's SDKs do over HTTPS.
    Checksum,
}

/// Quota and catalog backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StateSettings {
    /// An embedded database on local disk (the embedded default; see `docs/state.md`).
    Embedded {
        /// Path of the database file (a legacy `state.json` next to it is migrated on first
        /// start; a `.json` path names `state.redb` next to it).
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
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Required `iss` claim; empty = not checked.
    #[serde(default)]
    pub issuer: String,
    /// Required `aud` claim (one of the token's audiences); empty = not checked.
    #[serde(default)]
    pub audience: String,
}

/// Limits, by what they bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// One upload as it arrives.
    pub upload: UploadLimits,
    /// Decoding, parsing and converting (the pipeline's own limits, read as they are).
    #[serde(default)]
    pub pipeline: imaging_pipeline::Limits,
    /// Report PDFs, which grow with every append.
    pub report: ReportLimits,
    /// Uploads at once, and the memory they may hold.
    pub admission: AdmissionLimits,
    /// Workspace quotas.
    pub quota: QuotaLimits,
    /// Resumable upload sessions.
    pub sessions: SessionLimits,
    /// Receipts accepted for asynchronous processing (Concur Receipts v4, gRPC `process_async`):
    /// the dialect's own limits.
    pub async_receipts: AsyncReceiptLimits,
    /// The job queue that processes them.
    pub jobs: JobLimits,
    /// Finding duplicate receipts at ingest.
    pub duplicates: DuplicateLimits,
}

/// Duplicate detection: every image (but report PDFs) is indexed per workspace by the SHA-256 of
/// its stored bytes and, for a picture, its perceptual hash; an upload is answered with the
/// earlier images it matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicateLimits {
    /// Look for duplicates at all (the index is kept either way).
    pub enabled: bool,
    /// Perceptual hashes this many bits apart or fewer are candidates (the index finds every
    /// one within 3 bits, most beyond).
    pub max_distance: u32,
    /// A candidate is the same picture if no cell of the two block signatures differs by more
    /// than this many grey levels (a re-encoded or halved copy: about 4; another amount on the
    /// same shop's receipt: 10 or more).
    pub signature_distance: u32,
    /// Candidates read per index key (the newest).
    pub candidates: usize,
}

/// The limits of receipts processed asynchronously (Concur Receipts v4 and gRPC
/// `process_async`), which differ from a synchronous upload's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncReceiptLimits {
    /// Largest upload in bytes (Concur Receipts v4: 25 MB).
    pub max_bytes: u64,
    /// An image with a side over this many pixels is reduced to it on its long side (0: never).
    pub max_side: u32,
    /// Declared types accepted (`image/jpg` and `image/tif` are aliases).
    pub types: Vec<String>,
}

/// The job queue of asynchronous receipts: every replica works it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobLimits {
    /// Jobs one replica works at once (each under the memory budget, like an upload); 0 = this
    /// replica works none.
    pub workers: usize,
    /// How often an idle worker looks for jobs, in ms (a job accepted by this replica wakes it
    /// at once).
    pub poll_millis: u64,
    /// A job whose worker has not renewed its hold for this long (it died) is taken by another
    /// worker, in seconds; a live worker renews every third of it.
    pub lease_seconds: u64,
    /// Attempts before a job that keeps failing for a reason that may heal (storage or state
    /// unavailable, a worker that died) is given up as `FAILED`.
    pub max_attempts: u32,
    /// The wait before the first retry, in ms; it doubles with every attempt.
    pub retry_base_millis: u64,
    /// The longest wait between attempts, in seconds.
    pub retry_max_seconds: u64,
    /// How long a receipt's processing status is kept, in seconds (Concur: 14 days).
    pub status_ttl_seconds: u64,
}

/// Resumable upload sessions (tus, HTTP resumable uploads, gRPC `StartUpload`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimits {
    /// A session not completed this long after it was started is removed with its bytes, and
    /// its quota reservation lapses, in seconds.
    pub ttl_seconds: u64,
    /// Sessions one user (workspace and `sub`) may have open at once; more are refused with
    /// `TOO_MANY_OPEN_UPLOADS`.
    pub max_open_per_user: usize,
}

/// One upload as it arrives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadLimits {
    /// Largest upload in bytes.
    pub max_bytes: u64,
    /// Largest chunk in a gRPC upload stream, in bytes.
    pub max_chunk_bytes: usize,
    /// An upload stream that sends nothing for this long fails with `UPLOAD_TIMEOUT`, in seconds.
    pub idle_seconds: u64,
    /// An upload stream still sending after this long fails with `UPLOAD_TIMEOUT`, in seconds,
    /// however steadily it sends.
    pub deadline_seconds: u64,
    /// After [`Self::rate_grace_seconds`], an upload that has averaged fewer bytes per second
    /// than this since it began fails with `UPLOAD_TIMEOUT` (a trickle holds no slot); 0 = off.
    pub min_bytes_per_second: u64,
    /// How long an upload may send slowly (a phone finding its network) before its rate counts.
    pub rate_grace_seconds: u64,
    /// A file stored as sent whose declared size is at least this goes on to storage as it
    /// arrives (a streamed write, completed only once the upload passed its checks); 0 = never
    /// (for an S3-compatible server without `aws-chunked` PUTs).
    #[serde(default = "default_forward_from_bytes")]
    pub forward_from_bytes: u64,
}

fn default_forward_from_bytes() -> u64 {
    256 * 1024
}

/// Report PDFs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportLimits {
    /// Largest report PDF, in bytes: an append past it is refused with `REPORT_TOO_LARGE`.
    pub max_bytes: u64,
    /// Most pages of a report PDF: an append past it is refused with `REPORT_TOO_LARGE`.
    pub max_pages: u32,
}

/// Uploads at once, and the memory they may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionLimits {
    /// Uploads processed at once; more are refused at once with `OVERLOADED` (load shedding).
    pub max_in_flight: usize,
    /// Uploads one user may have in flight; more are refused with `TOO_MANY_UPLOADS`.
    pub max_per_user: usize,
    /// Uploads one workspace may have in flight; more are refused with `TOO_MANY_UPLOADS`.
    pub max_per_workspace: usize,
    /// Memory all uploads in flight may reserve together, in bytes (received bytes and
    /// pipeline work); see the README's "Limits and protections".
    pub memory_budget_bytes: u64,
    /// How long an upload waits for room in the memory budget before `OVERLOADED`, in ms.
    pub memory_wait_millis: u64,
}

/// Workspace quotas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    /// Quota of a workspace that has no override, in bytes.
    pub default_bytes: u64,
    /// A quota reservation neither committed nor released (a crash, an outage, a lost reply)
    /// lapses after this, in seconds, giving its bytes back by itself.
    pub reservation_ttl_seconds: u64,
}

/// The dev-only HS256 secret, used only in dev mode when no key is configured.
pub const DEV_HS256_SECRET: &str = "dev-only-secret-change-me";
/// The dev-only URL signing key, used only in dev mode when none is configured.
pub const DEV_URL_SIGNING_KEY: &str = "dev-only-url-signing-key-change-me";

/// Built-in defaults: the embedded mode (filesystem storage, embedded state) under `./data`.
const DEFAULTS: &str = r#"
[server]
grpc_addr = "127.0.0.1:50051"
files_addr = "127.0.0.1:8081"
files_public_url = ""
url_ttl_seconds = 900
lock_wait_seconds = 30
lock_ttl_millis = 60000
drain_seconds = 30
max_connections = 1024
idle_timeout_seconds = 60
header_read_timeout_seconds = 10
max_concurrent_streams = 100
keepalive_interval_seconds = 20
keepalive_timeout_seconds = 10

[storage]
backend = "filesystem"
root = "data/objects"
url_signing_key = ""

[state]
backend = "embedded"
path = "data/state.redb"

[auth]
hs256_secret = ""
rs256_public_key_pem = ""
es256_public_key_pem = ""
leeway_seconds = 5

[limits.upload]
max_bytes = 10485760
max_chunk_bytes = 1048576
idle_seconds = 15
deadline_seconds = 300
min_bytes_per_second = 8192
rate_grace_seconds = 10
forward_from_bytes = 262144

# [limits.pipeline] and [limits.pipeline.pdf]: the pipeline's own defaults (README, Configuration).

[limits.report]
max_bytes = 200000000
max_pages = 2000

[limits.admission]
max_in_flight = 64
max_per_user = 8
max_per_workspace = 32
memory_budget_bytes = 1073741824
memory_wait_millis = 2000

[limits.quota]
default_bytes = 1073741824
reservation_ttl_seconds = 300

[limits.sessions]
ttl_seconds = 86400
max_open_per_user = 8

[limits.async_receipts]
max_bytes = 26214400
max_side = 2200
types = ["image/png", "image/jpeg", "image/tiff", "image/gif", "application/pdf", "image/heic", "image/heif"]

[limits.jobs]
workers = 2
poll_millis = 500
lease_seconds = 60
max_attempts = 5
retry_base_millis = 1000
retry_max_seconds = 300
status_ttl_seconds = 1209600

[limits.duplicates]
enabled = true
max_distance = 6
signature_distance = 6
candidates = 64

[events]
outbox = true
nats_url = ""
stream = "IMAGING_EVENTS"
subject_prefix = "imaging.events"
create_stream = true
duplicate_window_seconds = 120
poll_millis = 200
batch = 100
lease_seconds = 10
scan_seconds = 30
publish_timeout_millis = 2000
webhook_timeout_millis = 10000
webhook_retry_seconds = 86400
webhook_retry_base_millis = 1000
webhook_retry_max_seconds = 3600
webhook_concurrency = 16
webhook_max_queued = 100000
webhook_log_size = 1000
"#;

/// Loads settings: defaults, then the TOML file named by `file` (if any), then `APP__*` variables;
/// `dev` (or `APP__DEV=true`) turns dev mode on, which fills in the dev secrets (see
/// [`Settings::fill_dev_defaults`]).
pub fn load(file: Option<&std::path::Path>, dev: bool) -> Result<Settings, config::ConfigError> {
    let mut settings = load_raw(file)?;
    settings.dev |= dev;
    settings.fill_dev_defaults();
    Ok(settings)
}

fn load_raw(file: Option<&std::path::Path>) -> Result<Settings, config::ConfigError> {
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
    /// The built-in defaults in dev mode, rooted at `data_dir` (tests and the quick start).
    pub fn embedded(data_dir: &std::path::Path) -> Settings {
        let mut settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("built-in defaults are valid");
        settings.dev = true;
        settings.storage = StorageSettings::Filesystem {
            root: data_dir.join("objects"),
            url_signing_key: SecretString::from(""),
        };
        settings.state = StateSettings::Embedded {
            path: data_dir.join("state.redb"),
        };
        settings.fill_dev_defaults();
        settings
    }

    /// In dev mode, fills in the dev HS256 secret if no token key of any kind is configured, and
    /// the dev URL signing key if none is. Outside dev mode, changes nothing.
    pub fn fill_dev_defaults(&mut self) {
        if !self.dev {
            return;
        }
        let auth = &mut self.auth;
        if auth.hs256_secret.expose_secret().is_empty()
            && auth.rs256_public_key_pem.is_empty()
            && auth.es256_public_key_pem.is_empty()
        {
            auth.hs256_secret = SecretString::from(DEV_HS256_SECRET);
        }
        if let StorageSettings::Filesystem {
            url_signing_key, ..
        } = &mut self.storage
            && url_signing_key.expose_secret().is_empty()
        {
            *url_signing_key = SecretString::from(DEV_URL_SIGNING_KEY);
        }
    }

    /// Refuses settings the service cannot run safely with, naming the setting: no token key,
    /// or filesystem storage without a URL signing key, or (outside dev mode) a dev secret.
    pub fn check(&self) -> Result<(), SettingsError> {
        let auth = &self.auth;
        let hs256 = auth.hs256_secret.expose_secret();
        if hs256.is_empty()
            && auth.rs256_public_key_pem.is_empty()
            && auth.es256_public_key_pem.is_empty()
        {
            return Err(SettingsError(
                "no token key is configured: set auth.hs256_secret (APP__AUTH__HS256_SECRET), \
                 auth.rs256_public_key_pem or auth.es256_public_key_pem, or run with --dev"
                    .to_owned(),
            ));
        }
        if !self.dev && hs256 == DEV_HS256_SECRET {
            return Err(SettingsError(
                "auth.hs256_secret is the public dev secret; set your own or run with --dev"
                    .to_owned(),
            ));
        }
        if let StorageSettings::Filesystem {
            url_signing_key, ..
        } = &self.storage
        {
            let key = url_signing_key.expose_secret();
            if key.is_empty() {
                return Err(SettingsError(
                    "filesystem storage needs storage.url_signing_key (APP__STORAGE__URL_SIGNING_KEY), \
                     or run with --dev"
                        .to_owned(),
                ));
            }
            if !self.dev && key == DEV_URL_SIGNING_KEY {
                return Err(SettingsError(
                    "storage.url_signing_key is the public dev key; set your own or run with --dev"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// Settings the service refuses to start with; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_describe_the_embedded_mode_with_a_ten_megabyte_limit() {
        let settings = Settings::embedded(std::path::Path::new("/tmp/x"));
        assert_eq!(settings.limits.upload.max_bytes, 10_485_760);
        assert!(matches!(
            settings.storage,
            StorageSettings::Filesystem { .. }
        ));
        assert!(matches!(settings.state, StateSettings::Embedded { .. }));
        assert_eq!(settings.auth.hs256_secret.expose_secret(), DEV_HS256_SECRET);
        settings.check().unwrap();
    }

    fn load_toml(text: &str) -> Result<Settings, config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, text).unwrap();
        load(Some(&path), true)
    }

    #[test]
    fn limits_are_read_by_group_and_the_pipeline_keeps_its_defaults_for_what_is_not_set() {
        let settings = load_toml(
            "[limits.upload]\nmax_bytes = 5000\n[limits.pipeline]\nmax_edge = 1024\n\
             [limits.pipeline.pdf]\nmax_pages = 7\n[limits.admission]\nmax_per_user = 3\n",
        )
        .unwrap();
        let limits = &settings.limits;
        assert_eq!(limits.upload.max_bytes, 5000);
        assert_eq!(
            limits.upload.max_chunk_bytes, 1_048_576,
            "the other defaults stay"
        );
        assert_eq!(limits.pipeline.max_edge, 1024);
        assert_eq!(limits.pipeline.pdf.max_pages, 7);
        let defaults = imaging_pipeline::Limits::default();
        assert_eq!(limits.pipeline.max_pixels, defaults.max_pixels);
        assert_eq!(limits.pipeline.pdf.max_tokens, defaults.pdf.max_tokens);
        assert_eq!(limits.admission.max_per_user, 3);
        assert_eq!(limits.report.max_pages, 2000);
    }

    #[test]
    fn a_limit_under_a_name_no_group_has_is_refused_by_name() {
        for text in [
            "[limits]\nmax_upload_bytes = 5000\n",
            "[limits.pipeline]\nmax_pixles = 5\n",
        ] {
            let err = load_toml(text).unwrap_err().to_string();
            assert!(err.contains("unknown field"), "{err}");
        }
    }

    fn production() -> Settings {
        let mut settings = Settings::embedded(std::path::Path::new("/tmp/x"));
        settings.dev = false;
        settings.auth.hs256_secret = SecretString::from("");
        settings.storage = StorageSettings::Filesystem {
            root: "/tmp/x".into(),
            url_signing_key: SecretString::from("a-real-key"),
        };
        settings
    }

    #[test]
    fn outside_dev_mode_no_key_and_dev_keys_are_refused_naming_the_setting() {
        let mut settings = production();
        settings.fill_dev_defaults();
        let refused = settings.check().unwrap_err().to_string();
        assert!(refused.contains("auth.hs256_secret"), "{refused}");

        settings.auth.hs256_secret = SecretString::from(DEV_HS256_SECRET);
        let refused = settings.check().unwrap_err().to_string();
        assert!(refused.contains("dev secret"), "{refused}");

        settings.auth.hs256_secret = SecretString::from("own-secret");
        settings.check().unwrap();
        settings.storage = StorageSettings::Filesystem {
            root: "/tmp/x".into(),
            url_signing_key: SecretString::from(""),
        };
        let refused = settings.check().unwrap_err().to_string();
        assert!(refused.contains("storage.url_signing_key"), "{refused}");
    }

    #[test]
    fn dev_mode_fills_the_hs256_secret_only_when_no_key_of_any_kind_is_configured() {
        let mut settings = production();
        settings.dev = true;
        settings.auth.rs256_public_key_pem = "-----BEGIN PUBLIC KEY-----".into();
        settings.fill_dev_defaults();
        assert!(
            settings.auth.hs256_secret.expose_secret().is_empty(),
            "an RS256 key switches HS256 off"
        );
        settings.auth.rs256_public_key_pem.clear();
        settings.fill_dev_defaults();
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
            payload: PayloadCheck::default(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hs-secret-value"), "{shown}");
        assert!(!shown.contains("s3-secret-value"), "{shown}");
        let embedded = format!("{:?}", Settings::embedded(std::path::Path::new("/tmp/x")));
        assert!(!embedded.contains("dev-only-url-signing-key"), "{embedded}");
    }
}
