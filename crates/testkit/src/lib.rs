//! Test support shared by riskserve's integration tests (`tests/`) and the
//! swap benchmark (`crates/swapbench`), so neither keeps its own copy:
//!
//! - [`process`]: `riskserve serve` (or any binary that logs
//!   `riskserve listening ... addr=...`) as a child process on 127.0.0.1:0,
//!   its address read from its log within a deadline, killed on drop;
//! - [`http`]: a small keep-alive HTTP/1.1 client with a timeout on every step;
//! - [`grpc`]: a small gRPC client (unary calls over one HTTP/2 connection);
//! - [`h2raw`]: HTTP/2 written frame by frame, for abuse;
//! - [`prometheus`]: reads series out of Prometheus text format;
//! - [`tools`]: finds the external programs `.ci/setup` installs.
//!
//! It knows nothing of riskserve's internals: only its command line and
//! its log line.

#![forbid(unsafe_code)]

pub mod grpc;
pub mod h2raw;
pub mod http;
pub mod process;
pub mod prometheus;
pub mod tools;

pub use http::{Client, ClientError, Method, Reply};
pub use process::{serve_command, spawn, Child, Log, LogStream, SpawnError, Spawned};
