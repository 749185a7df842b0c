//! Shared pieces of the benchmark binaries (`conversion`, `uploads`): tables and process memory.

pub mod conversion;
pub mod memory;
pub mod service;
pub mod stack;
pub mod table;
pub mod uploads;
