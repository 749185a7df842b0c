//! What every handler shares: the ingest client and the upload limits.

use crate::configuration::Settings;
use crate::ingest::{self, Ingest};
use crate::upload::Limits;
use std::time::Duration;

/// Shared handler state; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The ingest service.
    pub ingest: Ingest,
    /// Upload limits.
    pub limits: Limits,
    /// Upload limits of Concur Receipts v4.
    pub v4_limits: Limits,
}

impl AppState {
    /// State from settings, with a lazy channel to the ingest service (nothing is dialled
    /// until the first call). Must run inside a Tokio runtime.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let channel = ingest::connect_lazy(
            &settings.ingest.url,
            Duration::from_secs(settings.ingest.connect_timeout_seconds),
        )?;
        Ok(AppState {
            ingest: Ingest::new(channel, settings.request_timeout()),
            limits: Limits {
                max_upload_bytes: settings.limits.max_upload_bytes,
                chunk_bytes: settings.limits.chunk_bytes,
            },
            v4_limits: Limits {
                max_upload_bytes: settings.limits.receipts_v4_max_upload_bytes,
                chunk_bytes: settings.limits.chunk_bytes,
            },
        })
    }
}
