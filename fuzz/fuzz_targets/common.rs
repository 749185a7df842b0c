//! What every target shares: the counting allocator the oracles meter with, and the oracles.

#[global_allocator]
static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;

#[allow(dead_code)] // each target uses one oracle
#[path = "../oracles.rs"]
mod oracles;
pub use oracles::*;
