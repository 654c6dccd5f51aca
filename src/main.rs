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
/// connections) from staying with the process after the burst. glibc's
/// defaults raise the mmap threshold after the first large free, so later
/// large buffers come from arenas that are rarely given back, and every
/// thread that allocates can get an arena of its own: measured with
/// `bench/hostile.sh`, RSS stayed at 7× its starting size after the abuse
/// cases. A fixed 128 KiB threshold returns large buffers to the system when
/// they are freed, and two arenas per core bound the fragmentation.
///
/// Small chunks freed after a burst of connections stay in the arenas'
/// free lists; a low-priority thread gives free pages back every
/// [`TRIM_EVERY`] (`malloc_trim`, which only releases memory nobody uses).
///
/// The only `unsafe` in the project (the library forbids it): libc allocator
/// tuning calls with constant arguments.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let arenas = i32::try_from(2 * cores).unwrap_or(i32::MAX);
    // SAFETY: mallopt only changes allocator parameters; called first thing
    // in main, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
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
