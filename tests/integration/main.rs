//! All integration tests, in one binary: each module starts the real server
//! on 127.0.0.1:0 over a temp model repository and talks HTTP to it.

mod cli;
mod common;
mod errors;
mod exact_swap;
mod hostile_files;
mod hot_swap;
mod limits;
mod predict;
mod reload;
mod report;
mod shutdown;
mod swap_harness;
