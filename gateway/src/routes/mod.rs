//! HTTP routes, one module per dialect plus the operational endpoints.

pub mod concur;
pub mod health;
pub mod receipts_v3;
pub mod receipts_v4;
pub mod resumable;
pub mod tus;
pub mod workspace;

#[cfg(test)]
mod tests;
