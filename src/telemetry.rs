//! Logging through tracing-subscriber: human text or JSON lines on stderr,
//! level from `RUST_LOG` (default `info`).

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls
/// are no-ops), so tests can start several servers.
pub fn init(format: LogFormat) {
    // notify logs every removed watch at info; operators delete version
    // directories routinely, so only its warnings are shown by default.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,notify=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
