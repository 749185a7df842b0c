//! The ingest service: receipt and invoice images in, checked, stored, and found again.
//!
//! Layers: [`ingest`] is the domain (pipeline + stores + quota + identity wired per target
//! kind); [`storage`] and [`state`] are the backends behind small traits; [`grpc`] is the edge
//! that owns the mapping to `tonic::Status`; [`startup`] builds and runs it all.

pub mod auth;
pub mod configuration;
pub mod error;
pub mod events;
pub mod grpc;
pub mod ingest;
pub mod janitor;
pub mod reconcile;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
