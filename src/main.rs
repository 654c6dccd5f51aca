//! `riskserve`: parses the command line and hands it to the library.
//!
//! The server runs on jemalloc rather than glibc's malloc, because memory
//! taken by a burst (a 1 MiB body, a big batch, thousands of connections)
//! must go back after it. With glibc every thread got an arena of its own,
//! and after `bench/hostile.sh`'s abuse cases each arena kept a few hundred
//! KiB of pages pinned by a handful of long-lived chunks, although the
//! process's live heap was back to what it was (1.6 MB at the warm start
//! and at the end): RSS ended 16–20 % above its warm start, in spite of a
//! fixed mmap threshold, `malloc_trim` every 2 s and a per-thread nudge
//! that made glibc release each arena's top. jemalloc with one arena
//! (`narenas:1`) keeps the long-lived allocations together, its background
//! thread returns freed pages after about a second, and its thread caches
//! (kept to objects up to 1 KiB) make one arena as fast as many here. The options are compiled in from
//! `.cargo/config.toml`; `_RJEM_MALLOC_CONF` overrides them at run time.
//! mimalloc was measured too and kept far more after the cases (README,
//! "Hostile clients and files, measured"). jemalloc's statistics are
//! exported as `riskserve_allocator_*_bytes`
//! (`riskserve::metrics::allocator::jemalloc`, installed first thing).
#![forbid(unsafe_code)]

use clap::Parser;

#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    riskserve::metrics::allocator::install(riskserve::metrics::allocator::jemalloc);
    let cli = riskserve::cli::Cli::parse();
    match riskserve::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
