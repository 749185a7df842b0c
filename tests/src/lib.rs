//! Test support shared by the service's and the gateway's end-to-end tests: real servers
//! (a `redis-server` child process, an in-process `s3s-fs` S3 server with SigV4) on free ports,
//! the service and the whole stack spawned on them ([`service`], [`stack`]), and test files
//! made in code.

#![allow(clippy::unwrap_used)]

pub mod fixtures;
pub mod proxy;
pub mod servers;
pub mod service;
pub mod stack;

pub use servers::{
    MotoServer, NatsServer, RedisCluster, RedisServer, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY,
    S3Server, free_port,
};
