//! The shared spawn helpers and `TestApp` of the test-support crate.

pub use imaging_e2e::service::*;
