//! The shared whole-stack helpers of the test-support crate.

pub use imaging_e2e::stack::*;
