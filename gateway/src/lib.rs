//! REST gateway for receipt images: Concur Image v1 (raw bytes in, XML out) and workspace
//! receipts (multipart in, JSON out), each request turned into calls to the gRPC ingest
//! service. Upload bodies are streamed through, never buffered whole.

pub mod configuration;
pub mod error;
pub mod headers;
pub mod ids;
pub mod ingest;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod upload;
pub mod xml;
