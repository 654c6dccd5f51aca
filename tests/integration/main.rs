//! All integration tests, in one binary: each module starts the real server
//! on 127.0.0.1:0 over a temp model repository and talks HTTP to it.

mod browser;
mod cli;
mod common;
mod deploy;
mod drift;
mod errors;
mod exact_swap;
mod grpc;
mod hostile_files;
mod hot_swap;
mod imports;
mod limits;
mod object_store;
mod oip_clients;
mod predict;
mod reload;
mod report;
mod rollout;
mod schema_evolution;
mod shutdown;
mod swap_harness;
