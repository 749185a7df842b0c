//! Settings: built-in defaults, then an optional TOML file, then `APP__SECTION__KEY` environment
//! variables (e.g. `APP__INGEST__URL`). Tests build [`Settings`] values directly
//! ([`Settings::for_ingest`]) and never touch the process environment.

use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The largest chunk the ingest service accepts in an upload stream (1 MiB).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// Everything the gateway can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The HTTP listener and request timing.
    pub server: ServerSettings,
    /// Where the ingest service is.
    pub ingest: IngestSettings,
    /// Upload limits.
    pub limits: LimitSettings,
}

/// The HTTP listener and request timing.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Listen address (`host:port`; port 0 picks a free one).
    pub listen_addr: String,
    /// Deadline of each gRPC call to the ingest service (a whole upload included), in seconds.
    pub request_timeout_seconds: u64,
    /// How long in-flight requests may run after a shutdown signal, in seconds.
    pub shutdown_timeout_seconds: u64,
    /// Connections open at once (lowered to fit the open-files limit).
    pub max_connections: usize,
    /// A connection that moves no byte for this long is closed, in seconds.
    pub idle_timeout_seconds: u64,
    /// HTTP/1: the request head must arrive within this, in seconds.
    pub header_read_timeout_seconds: u64,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

/// Where the ingest service is.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    /// gRPC URL of the ingest service, e.g. `http://127.0.0.1:50051`.
    pub url: String,
    /// How long connecting to the ingest service may take, in seconds.
    pub connect_timeout_seconds: u64,
}

/// Upload limits.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Largest upload in bytes; the next byte ends the upload with 413.
    pub max_upload_bytes: u64,
    /// Size of the chunks forwarded to the ingest service (at most [`MAX_CHUNK_BYTES`]).
    pub chunk_bytes: usize,
    /// Largest upload of Concur Receipts v4 (image-only receipts) in bytes: the dialect's own
    /// limit (25 MB), enforced again by the service (`limits.async_receipts.max_bytes`).
    pub receipts_v4_max_upload_bytes: u64,
}

/// Built-in defaults.
const DEFAULTS: &str = r#"
[server]
listen_addr = "127.0.0.1:8080"
request_timeout_seconds = 60
shutdown_timeout_seconds = 30
max_connections = 1024
idle_timeout_seconds = 60
header_read_timeout_seconds = 10
max_concurrent_streams = 100

[ingest]
url = "http://127.0.0.1:50051"
connect_timeout_seconds = 5

[limits]
max_upload_bytes = 10485760
chunk_bytes = 262144
receipts_v4_max_upload_bytes = 26214400
"#;

impl ServerSettings {
    /// The listener's limits, with the connection cap lowered to fit the open-files limit
    /// (raised to its hard limit first).
    pub fn listener_limits(&self) -> imaging_net::ListenerLimits {
        let open_files = imaging_net::raise_open_files_limit();
        imaging_net::ListenerLimits {
            max_connections: imaging_net::connection_cap(self.max_connections, open_files, 1),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            max_concurrent_streams: self.max_concurrent_streams,
            ..imaging_net::ListenerLimits::default()
        }
    }
}

/// Loads settings: defaults, then the TOML file `file` (if any), then `APP__*` variables.
pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let settings: Settings = builder
        .add_source(
            config::Environment::with_prefix("APP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?
        .try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}

impl Settings {
    /// The built-in defaults, talking to the ingest service at `url` and listening on
    /// `127.0.0.1:0` (a free port; read it back with `Application::port`).
    pub fn for_ingest(url: impl Into<String>) -> Settings {
        Settings {
            server: ServerSettings {
                listen_addr: "127.0.0.1:0".to_owned(),
                request_timeout_seconds: 60,
                shutdown_timeout_seconds: 30,
                max_connections: 1024,
                idle_timeout_seconds: 60,
                header_read_timeout_seconds: 10,
                max_concurrent_streams: 100,
            },
            ingest: IngestSettings {
                url: url.into(),
                connect_timeout_seconds: 5,
            },
            limits: LimitSettings {
                max_upload_bytes: 10_485_760,
                chunk_bytes: 262_144,
                receipts_v4_max_upload_bytes: 26_214_400,
            },
        }
    }

    /// Refuses values the gateway cannot work with.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_CHUNK_BYTES).contains(&self.limits.chunk_bytes),
            "limits.chunk_bytes must be between 1 and {MAX_CHUNK_BYTES}"
        );
        anyhow::ensure!(
            self.limits.max_upload_bytes > 0,
            "limits.max_upload_bytes must be positive"
        );
        Ok(())
    }

    /// The deadline of each gRPC call.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_defaults_match_the_code_constructor() {
        let loaded: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .unwrap();
        let built = Settings::for_ingest("http://127.0.0.1:50051");
        assert_eq!(loaded.server.listen_addr, "127.0.0.1:8080");
        assert_eq!(loaded.ingest.url, built.ingest.url);
        assert_eq!(
            loaded.limits.max_upload_bytes,
            built.limits.max_upload_bytes
        );
        assert_eq!(loaded.limits.chunk_bytes, built.limits.chunk_bytes);
        assert_eq!(
            loaded.limits.receipts_v4_max_upload_bytes,
            built.limits.receipts_v4_max_upload_bytes
        );
        assert_eq!(
            loaded.server.request_timeout_seconds,
            built.server.request_timeout_seconds
        );
        assert!(loaded.validate().is_ok());
    }

    #[test]
    fn a_chunk_size_over_one_mebibyte_is_refused() {
        let mut settings = Settings::for_ingest("http://127.0.0.1:1");
        settings.limits.chunk_bytes = MAX_CHUNK_BYTES + 1;
        assert!(settings.validate().is_err());
        settings.limits.chunk_bytes = 0;
        assert!(settings.validate().is_err());
    }
}
