//! Image and PDF pipeline for the ingest service: pure, synchronous functions with no I/O, meant
//! to run on a blocking pool. Sniff and validate uploads, convert workspace receipts to WebP,
//! build and append report PDFs.

mod arrival;
mod cost;
mod error;
mod fingerprint;
mod gif_frame;
mod header;
mod heic;
mod image_page;
mod inspect;
mod jpeg;
mod media;
pub mod meter;
mod pdf;
pub mod pdf_guard;
mod png_scan;
mod reduce;
mod tiff_pdf;
mod tiff_scan;
mod webp;
mod yuv;

pub use arrival::Arrival;
pub use cost::{Estimate, Step, estimate, memory_cost};
pub use error::PipelineError;
pub use fingerprint::{
    ArrivedCheck, Fingerprint, JpegStart, SIGNATURE_HEIGHT, SIGNATURE_WIDTH, fingerprint,
    jpeg_start, signature_distance, verify_jpeg_arriving,
};
pub use inspect::{
    DecodeCost, Inspected, decode_cost, inspect, inspect_arrived_jpeg, inspect_estimated,
};
pub use media::{MediaType, sniff};
pub use meter::MeteredAlloc;
pub use pdf::{
    MAX_OBJECT_NUMBER, ReportLayout, ReportUpdate, adopt_report, append_to_report, start_report,
};
pub use reduce::{REDUCED_JPEG_QUALITY, Reduced, reduce, reduction_limits};
pub use webp::{WEBP_METHOD, WebpOutput, to_webp};

/// The stages of [`to_webp`], one function each, so that the benchmark times the very code the
/// service runs.
pub mod webp_stages {
    /// The YCbCr path a JPEG takes (see `to_webp`).
    pub use crate::jpeg::Plane;
    /// The scale a JPEG is decoded at for its conversion.
    pub use crate::webp::jpeg_scale;
    pub use crate::webp::{
        Decoded, JpegHeader, decode, decode_for_target, encode, jpeg_header, lossy_config,
        opaque_or_rgba, orient, resize, target_size,
    };
    pub use crate::yuv::{Yuv420, decode as yuv_decode, encode as yuv_encode, fit as yuv_fit};
}

/// Limits applied to every decode, parse and conversion, all checked before the memory they
/// guard is allocated. Read from settings as they are (a field left out keeps its default).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest image in pixels (width x height), checked from the header before decoding.
    pub max_pixels: u64,
    /// Largest decoded image in bytes (pixels x bytes per pixel: 16-bit samples and alpha
    /// count), checked from the header before decoding.
    pub max_image_bytes: u64,
    /// PNG metadata (ICC profile, text, EXIF) in bytes, inflated, in all.
    pub max_ancillary_bytes: u64,
    /// Budgets of PDF parsing.
    pub pdf: PdfLimits,
    /// Long edge of converted WebP images.
    pub max_edge: u32,
    /// Lossy WebP quality, 0 to 100.
    pub webp_quality: f32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
            max_image_bytes: 256 * 1024 * 1024,
            max_ancillary_bytes: 4 * 1024 * 1024,
            pdf: PdfLimits::default(),
            max_edge: 2048,
            webp_quality: 80.0,
        }
    }
}

/// Budgets of PDF parsing (see [`pdf_guard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PdfLimits {
    /// Tokens outside stream data (what the parser turns into objects).
    pub max_tokens: u64,
    /// Indirect objects.
    pub max_objects: u64,
    /// Nesting of arrays and dictionaries.
    pub max_depth: u32,
    /// Bytes one object or cross-reference stream may inflate to.
    pub max_stream_inflated_bytes: u64,
    /// Bytes all of them together may inflate to.
    pub max_inflated_bytes: u64,
    /// Pages of one PDF.
    pub max_pages: u32,
}

impl Default for PdfLimits {
    fn default() -> Self {
        PdfLimits {
            max_tokens: 1_000_000,
            max_objects: 200_000,
            max_depth: 64,
            max_stream_inflated_bytes: 16 * 1024 * 1024,
            max_inflated_bytes: 32 * 1024 * 1024,
            max_pages: 2000,
        }
    }
}
