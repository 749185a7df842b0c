//! Image and PDF pipeline for the ingest service: pure, synchronous functions with no I/O, meant
//! to run on a blocking pool. Sniff and validate uploads, convert workspace receipts to WebP,
//! build and append report PDFs.

mod error;
mod header;
mod image_page;
mod inspect;
mod media;
mod pdf;
mod webp;

pub use error::PipelineError;
pub use inspect::{Inspected, inspect};
pub use media::{MediaType, sniff};
pub use pdf::{ReportPdf, append_to_report, start_report};
pub use webp::{WEBP_METHOD, WebpOutput, to_webp};

/// The stages of [`to_webp`], one function each, so that the benchmark times the very code the
/// service runs.
pub mod webp_stages {
    pub use crate::webp::{
        decode, encode, lossy_config, opaque_or_rgba, orient, resize, target_size,
    };
}

/// Limits applied to every decode and conversion.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest image in pixels (width x height), checked from the header before decoding.
    pub max_pixels: u64,
    /// Long edge of converted WebP images.
    pub max_edge: u32,
    /// Lossy WebP quality, 0 to 100.
    pub webp_quality: f32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
            max_edge: 2048,
            webp_quality: 80.0,
        }
    }
}
