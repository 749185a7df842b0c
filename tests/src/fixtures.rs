//! Test files made in code, from the shared fixtures crate.

pub use imaging_fixtures::*;
