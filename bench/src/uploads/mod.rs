//! The upload benchmark (`uploads` binary): the files it sends, the load generator for the three
//! routes (gRPC, REST gateway, direct S3 PUT) and the refusal checks.

pub mod corpus;
pub mod load;
pub mod refusal;
