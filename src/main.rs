//! `riskserve`: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = riskserve::cli::Cli::parse();
    match riskserve::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps memory from bursts (a 1 MiB body, a big batch, thousands of
/// connections) from staying with the process after the burst. glibc raises
/// its mmap threshold after the first large free, so later large buffers
/// come from arenas that are rarely given back, and small chunks freed after
/// a burst stay in the arenas' free lists. A fixed 128 KiB threshold returns
/// large buffers when they are freed, and a low-priority thread gives free
/// pages back every [`TRIM_EVERY`] (`malloc_trim` only releases memory
/// nobody uses). Measured with `bench/hostile.sh` (5 s cases): RSS after the
/// abuse cases 9.5–10.7 MiB instead of 18–64 MiB, at no measurable cost in
/// throughput (capping the arenas as well saved another ~1 MiB but cost
/// ~7 % of throughput, so it is not done).
///
/// The only `unsafe` in the project (the library forbids it): libc allocator
/// calls with constant arguments.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called first thing
    // in main, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    let _ = std::thread::Builder::new().name("riskserve-trim".into()).spawn(|| loop {
        std::thread::sleep(TRIM_EVERY);
        // SAFETY: malloc_trim is thread-safe and only returns free pages.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

/// How often free allocator pages are given back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
