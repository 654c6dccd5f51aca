//! Server configuration, resolved once into a typed [`Config`]:
//! built-in defaults < the config file < `RISKSERVE_*` environment variables
//! < command-line flags.
//!
//! Every setting is declared exactly once, in the `settings!` invocation
//! below: its name, type, default, help text and validation. From that one
//! declaration come the clap flag `--kebab-name` with its `RISKSERVE_NAME`
//! environment variable and a help line showing the default ([`ServeArgs`]),
//! the config-file key (`FileConfig`, unknown keys rejected), the default, the
//! merge and the check. clap reads the flags and their environment variables
//! into [`ServeArgs`]; tests build a `ServeArgs` directly (or parse flags)
//! instead of touching the process environment.
//!
//! The config file is the one named by `--config`/`RISKSERVE_CONFIG`, else
//! `config/riskserve.toml` beside the models directory
//! (`<models_dir>/../config/riskserve.toml`, with `models_dir` from the flag,
//! its environment variable or the default) if it exists, else none. It never
//! depends on the current directory except through a relative models path.

use crate::model::format::DEFAULT_MAX_MODEL_BYTES;
use crate::model::limits::DEFAULT_MAX_PREDICTION_COST;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The config file looked for beside the models directory, relative to the
/// models directory's parent.
pub const DEFAULT_CONFIG_FILE: &str = "config/riskserve.toml";

/// Every setting's environment variable is this prefix and its name in upper case.
pub const ENV_PREFIX: &str = "RISKSERVE_";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which versions of a model are loaded and served.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionPolicy {
    /// The N highest versions that load successfully.
    Latest(u32),
    /// Every version on disk.
    All,
    /// Exactly these versions (those present and valid).
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl std::fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionPolicy::Latest(n) => write!(f, "latest={n}"),
            VersionPolicy::All => write!(f, "all"),
            VersionPolicy::Specific(v) => write!(f, "specific={v:?}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Declares the `serve` settings. Each entry reads
///
/// ```text
/// /// Help text (one paragraph; the default is appended).
/// name: RawType = default, "VALUE_NAME" [, check f] => config_field: FieldType [= conversion];
/// ```
///
/// `name` is the config-file key, `--name` (kebab-case) and `RISKSERVE_NAME`;
/// the value given by a flag, env var, file or default is `RawType`, turned
/// into the [`Config`] field by `conversion` (identity when absent) and then
/// checked by `f(name, &field)`.
macro_rules! settings {
    (@convert $value:expr) => { $value };
    (@convert $value:expr, $conversion:path) => { $conversion($value) };
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $raw:ty = $default:expr, $value_name:literal $(, check $check:path)?
            => $field:ident: $field_ty:ty $(= $conversion:path)?;
    )+) => {
        /// `riskserve serve` flags. Each may also be set by its environment
        /// variable or in the config file (same name, `_` instead of `-`).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ServeArgs {
            /// Config file (TOML).
            #[arg(
                long,
                env = env_var!(config),
                value_name = "FILE",
                help = format!(
                    "Config file (TOML) [default: <models-dir>/../{DEFAULT_CONFIG_FILE}, if it exists]"
                ),
            )]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])+
                #[arg(
                    long,
                    env = env_var!($name),
                    value_name = $value_name,
                    help = help_with_default(concat!($($doc),+), &defaults::$name()),
                )]
                pub $name: Option<$raw>,
            )+
        }

        /// The config file's shape. Unknown keys are errors, so typos are caught.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileConfig {
            $($name: Option<$raw>,)+
            /// Version policy for models without their own entry.
            default_version_policy: Option<VersionPolicy>,
            #[serde(default)]
            models: BTreeMap<String, ModelConfig>,
        }

        /// Each setting's declared default.
        mod defaults {
            use super::*;
            $(pub(super) fn $name() -> $raw { $default })+
        }

        /// The resolved, validated server configuration.
        #[derive(Debug, Clone)]
        pub struct Config {
            $(
                $(#[doc = $doc])+
                pub $field: $field_ty,
            )+
            /// Version policy of models without their own `[models.<name>]` entry.
            pub default_policy: VersionPolicy,
            /// Per-model version policies from the config file.
            pub policies: BTreeMap<String, VersionPolicy>,
            /// The config file that was read, if any.
            pub config_file: Option<PathBuf>,
        }

        impl Config {
            /// Flag (or env) over file over default, for every setting; no validation.
            fn merge(args: ServeArgs, file: FileConfig, config_file: Option<PathBuf>) -> Config {
                Config {
                    $($field: settings!(
                        @convert args.$name.or(file.$name).unwrap_or_else(defaults::$name) $(, $conversion)?
                    ),)+
                    default_policy: file.default_version_policy.unwrap_or_default(),
                    policies: file.models.into_iter().map(|(k, v)| (k, v.version_policy)).collect(),
                    config_file,
                }
            }

            /// Each setting's declared check.
            fn check_settings(&self) -> Result<(), ConfigError> {
                $($($check(stringify!($name), &self.$field)?;)?)+
                Ok(())
            }
        }
    };
}

/// `RISKSERVE_` and the setting's name in upper case, as a `&'static str`
/// computed at compile time.
macro_rules! env_var {
    ($name:ident) => {{
        const BYTES: [u8; ENV_PREFIX.len() + stringify!($name).len()] = env_var_bytes(stringify!($name));
        const NAME: &str = match std::str::from_utf8(&BYTES) {
            Ok(name) => name,
            Err(_) => panic!("setting names are ASCII"),
        };
        NAME
    }};
}

settings! {
    /// Address to listen on.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), "ADDR" => listen: SocketAddr;
    /// Directory holding <model-name>/<version>/model.json.
    models_dir: PathBuf = PathBuf::from("models"), "DIR" => models_dir: PathBuf;
    /// Log format; the level comes from RUST_LOG (default info).
    log_format: LogFormat = LogFormat::Text, "FORMAT" => log_format: LogFormat;
    /// Seconds between full rescans of the models directory, repairing any
    /// missed filesystem event.
    rescan_interval_secs: u64 = 30, "SECS", check positive => rescan_interval: Duration = Duration::from_secs;
    /// Quiet period that coalesces a burst of filesystem events into one
    /// reload, in milliseconds.
    reload_debounce_ms: u64 = 20, "MS" => reload_debounce: Duration = Duration::from_millis;
    /// Largest request body accepted, in bytes (413 above).
    max_body_bytes: usize = 1024 * 1024, "BYTES", check positive => max_body_bytes: usize;
    /// Largest number of instances in one batch request (400 above).
    max_batch: usize = 1000, "N", check positive => max_batch: usize;
    /// One deadline per request, from its first byte, in milliseconds: headers
    /// and body must have arrived within it (408 after; a connection still
    /// sending headers is closed), and the answer must be ready within it
    /// (503 after).
    request_timeout_ms: u64 = 10_000, "MS", check positive => request_timeout: Duration = Duration::from_millis;
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, in
    /// seconds.
    shutdown_timeout_secs: u64 = 30, "SECS" => shutdown_timeout: Duration = Duration::from_secs;
    /// Largest model file that will be read, in bytes.
    max_model_bytes: u64 = DEFAULT_MAX_MODEL_BYTES, "BYTES", check positive => max_model_bytes: u64;
    /// A model load (read, verify, compile, warm up) or a listing of the
    /// models directory that takes longer is abandoned, in seconds (counted as
    /// result="timeout"; retried with backoff).
    load_timeout_secs: u64 = 30, "SECS", check positive => load_timeout: Duration = Duration::from_secs;
    /// Share of one CPU core a model load may take, in percent: it works in
    /// slices of 0.5 ms and sleeps in between, so requests on the same cores
    /// are not queued behind a multi-millisecond parse (100: no pauses).
    load_pacing_percent: u8 = 50, "PERCENT", check percent => load_pacing_percent: u8;
    /// Readiness answers 503 when no reload pass has listed the models
    /// directory for this many seconds (a hung mount, a dead reload task).
    reload_stale_secs: u64 = 120, "SECS", check positive => reload_stale_after: Duration = Duration::from_secs;
    /// A model version whose one prediction may visit more tree nodes than
    /// this (worst case over the forest) is refused as invalid.
    max_prediction_cost: u64 = DEFAULT_MAX_PREDICTION_COST, "VISITS", check positive => max_prediction_cost: u64;
    /// Follow symlinks (model directories, versions, model.json) that resolve
    /// outside the models directory; by default such a file is refused.
    follow_symlinks_outside_models_dir: bool = false, "BOOL" => follow_symlinks_outside_models_dir: bool;
    /// Show each failed load's full error (which may quote the file or name
    /// paths) in /v1/models as `detail`; by default only a fixed-wording
    /// reason is public and the full error goes to the log.
    operator_view: bool = false, "BOOL" => operator_view: bool;
    /// Prediction requests admitted at once (reading the body, parsing,
    /// scoring); the default is 64 per CPU core.
    max_inflight_requests: usize = default_max_inflight(), "N", check positive => max_inflight_requests: usize;
    /// Prediction requests that may wait for admission when all slots are
    /// taken; beyond this, 503 with Retry-After at once (0: no queue).
    max_queued_requests: usize = default_max_inflight(), "N" => max_queued_requests: usize;
    /// How long a queued prediction request may wait for admission, in
    /// milliseconds, and never past its request deadline (503 after).
    max_queue_wait_ms: u64 = 1000, "MS", check positive => max_queue_wait: Duration = Duration::from_millis;
    /// Open connections at most; one more is accepted and closed at once.
    /// Keep it below the file-descriptor limit (ulimit -n).
    max_connections: usize = 10_000, "N", check positive => max_connections: usize;
    /// Connections the kernel may hold completed for the accept loop (the
    /// listen backlog; Linux caps it at net.core.somaxconn). A burst of new
    /// connections beyond it has its handshakes dropped, and those clients
    /// retry after a second.
    listen_backlog: u32 = 4096, "N", check positive => listen_backlog: u32;
    /// A keep-alive connection with no request for this long is closed, in
    /// seconds.
    idle_timeout_secs: u64 = 60, "SECS", check positive => idle_timeout: Duration = Duration::from_secs;
    /// A connection whose client has not taken any response bytes for this
    /// long is closed, in milliseconds (a client that pipelines requests and
    /// never reads the answers).
    write_timeout_ms: u64 = 10_000, "MS", check positive => write_timeout: Duration = Duration::from_millis;
    /// Sync model versions from this object store into the models directory
    /// (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix,
    /// file:///dir; credentials from the cloud's environment variables; see
    /// docs/object-store.md); empty: serve the models directory as it is.
    sync_from: String = String::new(), "URL" => sync_from: Option<String> = non_empty;
    /// Mean time between manifest polls of --sync-from, in milliseconds (each
    /// replica waits 75-125 % of it; an unchanged manifest costs a 304).
    sync_interval_ms: u64 = 1000, "MS", check positive => sync_interval: Duration = Duration::from_millis;
    /// Also serve gRPC (the Open Inference Protocol's
    /// inference.GRPCInferenceService and grpc.health.v1.Health) on this
    /// address, sharing the models, limits and metrics of the HTTP listener
    /// (docs/grpc.md); empty: no gRPC listener.
    grpc_listen: OptionalAddr = OptionalAddr(None), "ADDR" => grpc_listen: Option<SocketAddr> = OptionalAddr::into_inner;
    /// Monitor drift: count each prediction in per-version bins and export
    /// the PSI of every feature and of the score against the version's
    /// training reference (docs/drift.md).
    drift: bool = true, "BOOL" => drift: bool;
    /// The drift window holds at most this many recent predictions per
    /// version.
    drift_window: u64 = 10_000, "N", check positive => drift_window: u64;
    /// The drift window holds predictions at most this old, in seconds
    /// (whichever of the two limits is shorter applies).
    drift_window_secs: u64 = 3600, "SECS", check positive => drift_window_age: Duration = Duration::from_secs;
}

/// An address that may be unset: empty (or `off`) is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl OptionalAddr {
    fn into_inner(self) -> Option<SocketAddr> {
        self.0
    }
}

impl std::str::FromStr for OptionalAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<OptionalAddr, String> {
        match text.trim() {
            "" | "off" => Ok(OptionalAddr(None)),
            addr => {
                addr.parse().map(|a| OptionalAddr(Some(a))).map_err(|e| format!("`{addr}`: {e} (e.g. 0.0.0.0:9090)"))
            }
        }
    }
}

impl TryFrom<String> for OptionalAddr {
    type Error = String;

    fn try_from(text: String) -> Result<OptionalAddr, String> {
        text.parse()
    }
}

impl ShowDefault for OptionalAddr {
    fn show(&self) -> String {
        self.0.map_or_else(|| "off".to_string(), |a| a.to_string())
    }
}

/// `None` for an empty string (an unset optional setting).
fn non_empty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

/// Slots per CPU core for [`Config::max_inflight_requests`]. A prediction
/// holds its slot while its body arrives (no CPU, up to `max_body_bytes` of
/// memory) and while it is scored (CPU-bound, microseconds per row): 64 per
/// core keeps every core busy behind slow uploads, while the memory that
/// admitted bodies can hold stays bounded (64 × cores × `max_body_bytes`
/// and the parsed batches: about 128 MiB per core at the defaults).
const INFLIGHT_PER_CORE: usize = 64;

/// The default [`Config::max_inflight_requests`]: [`INFLIGHT_PER_CORE`] per core.
fn default_max_inflight() -> usize {
    INFLIGHT_PER_CORE * std::thread::available_parallelism().map_or(1, usize::from)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelConfig {
    version_policy: VersionPolicy,
}

impl Config {
    /// A configuration with every default, serving `models_dir`.
    pub fn with_models_dir(models_dir: impl Into<PathBuf>) -> Config {
        let args = ServeArgs { models_dir: Some(models_dir.into()), ..ServeArgs::default() };
        Config::merge(args, FileConfig::default(), None)
    }

    /// Resolves flags/env over the config file over defaults, and validates.
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let models_dir = args.models_dir.clone().unwrap_or_else(defaults::models_dir);
        let config_file = find_config_file(args.config.as_deref(), &models_dir);
        let file = match &config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config = Config::merge(args.clone(), file, config_file);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.check_settings()?;
        for policy in std::iter::once(&self.default_policy).chain(self.policies.values()) {
            match policy {
                VersionPolicy::Latest(0) => {
                    return Err(ConfigError::Invalid {
                        key: "version_policy",
                        message: "latest must be at least 1".into(),
                    })
                }
                VersionPolicy::Specific(v) if v.is_empty() => {
                    return Err(ConfigError::Invalid {
                        key: "version_policy",
                        message: "specific needs at least one version".into(),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The version policy of a model.
    pub fn policy(&self, model: &str) -> &VersionPolicy {
        self.policies.get(model).unwrap_or(&self.default_policy)
    }
}

/// A setting's check: zero (of a count, size or duration) is refused.
fn positive<T: Default + PartialEq>(key: &'static str, value: &T) -> Result<(), ConfigError> {
    if *value == T::default() {
        Err(ConfigError::Invalid { key, message: "must be greater than zero".into() })
    } else {
        Ok(())
    }
}

fn percent(key: &'static str, value: &u8) -> Result<(), ConfigError> {
    if (1..=100).contains(value) {
        Ok(())
    } else {
        Err(ConfigError::Invalid { key, message: "must be a percentage from 1 to 100".into() })
    }
}

/// The config file to read: the one named explicitly, else
/// [`DEFAULT_CONFIG_FILE`] beside the models directory if it is a file.
fn find_config_file(explicit: Option<&Path>, models_dir: &Path) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    // `models` → `config/riskserve.toml`; `/srv/models` → `/srv/config/…`;
    // `.` or `..` have no name to drop, so go up through the directory itself.
    let beside = match (models_dir.file_name(), models_dir.parent()) {
        (Some(_), Some(parent)) => parent.join(DEFAULT_CONFIG_FILE),
        _ => models_dir.join("..").join(DEFAULT_CONFIG_FILE),
    };
    beside.is_file().then_some(beside)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })
}

/// The bytes of `RISKSERVE_<SETTING>`; `N` must be the prefix and name lengths summed.
const fn env_var_bytes<const N: usize>(setting: &str) -> [u8; N] {
    let (prefix, name) = (ENV_PREFIX.as_bytes(), setting.as_bytes());
    assert!(prefix.len() + name.len() == N);
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < prefix.len() { prefix[i] } else { name[i - prefix.len()].to_ascii_uppercase() };
        i += 1;
    }
    out
}

/// A setting's help line: its doc text followed by its declared default.
fn help_with_default(doc: &str, default: &dyn ShowDefault) -> String {
    format!("{} [default: {}]", doc.trim().trim_end_matches('.'), default.show())
}

/// How a default value is written in `--help`.
trait ShowDefault {
    fn show(&self) -> String;
}

macro_rules! show_with_display {
    ($($ty:ty),+) => {$(
        impl ShowDefault for $ty {
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )+};
}
show_with_display!(u8, u32, u64, usize, bool, SocketAddr, String);

impl ShowDefault for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl ShowDefault for LogFormat {
    fn show(&self) -> String {
        use clap::ValueEnum;
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// `ServeArgs` as the `serve` subcommand sees them.
    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(flags: &[&str]) -> Result<ServeArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("riskserve").chain(flags.iter().copied())).map(|w| w.args)
    }

    fn with_file(text: &str) -> (tempfile::TempDir, ServeArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("riskserve.toml");
        std::fs::write(&path, text).unwrap();
        (dir, ServeArgs { config: Some(path), ..Default::default() })
    }

    /// A temp dir holding `models/` and, if given, `config/riskserve.toml`.
    fn models_beside(config: Option<&str>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        if let Some(text) = config {
            std::fs::create_dir(dir.path().join("config")).unwrap();
            std::fs::write(dir.path().join(DEFAULT_CONFIG_FILE), text).unwrap();
        }
        (dir, models)
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let (_dir, mut args) = with_file(
            "listen = \"127.0.0.1:9000\"\nmax_batch = 50\n\n[models.credit-risk]\nversion_policy = { latest = 2 }\n\n\
             [models.other]\nversion_policy = \"all\"\n",
        );
        let cfg = Config::resolve(&args).unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.grpc_listen, None, "gRPC is off unless set");
        assert_eq!(cfg.max_batch, 50);
        assert_eq!(cfg.max_body_bytes, 1024 * 1024);
        assert_eq!(cfg.policy("credit-risk"), &VersionPolicy::Latest(2));
        assert_eq!(cfg.policy("other"), &VersionPolicy::All);
        assert_eq!(cfg.policy("unlisted"), &VersionPolicy::Latest(1));
        args.max_batch = Some(7);
        args.listen = Some("127.0.0.1:0".parse().unwrap());
        let cfg = Config::resolve(&args).unwrap();
        assert_eq!((cfg.max_batch, cfg.listen.port()), (7, 0));
    }

    #[test]
    fn parsed_flags_override_the_file_and_durations_convert() {
        let (dir, _) = with_file("request_timeout_ms = 2500\nrescan_interval_secs = 5\nlog_format = \"json\"\n");
        let file = dir.path().join("riskserve.toml");
        let file = file.to_str().unwrap();
        let cfg = Config::resolve(&parse(&["--config", file]).unwrap()).unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_millis(2500));
        assert_eq!(cfg.rescan_interval, Duration::from_secs(5));
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(30), "unset: the default");
        assert_eq!(cfg.config_file.as_deref(), Some(Path::new(file)));
        let flags =
            ["--config", file, "--request-timeout-ms", "40", "--log-format", "text", "--shutdown-timeout-secs", "2"];
        let cfg = Config::resolve(&parse(&flags).unwrap()).unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_millis(40));
        assert_eq!(cfg.rescan_interval, Duration::from_secs(5), "not on the command line: from the file");
        assert_eq!(cfg.log_format, LogFormat::Text);
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(2));
        let cfg = Config::resolve(&parse(&["--config", file, "--grpc-listen", "127.0.0.1:9090"]).unwrap()).unwrap();
        assert_eq!(cfg.grpc_listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert!(parse(&["--grpc-listen", "localhost"]).is_err(), "an address, not a name");
    }

    #[test]
    fn help_shows_each_declared_default_and_environment_variable() {
        let mut command = Wrapper::command();
        let help = command.render_long_help().to_string();
        let settings: Vec<_> = command.get_arguments().filter(|a| a.get_long().is_some_and(|l| l != "help")).collect();
        assert_eq!(settings.len(), 30, "--config and twenty-nine settings");
        for arg in &settings {
            let id = arg.get_id().as_str();
            let env = format!("{ENV_PREFIX}{}", id.to_uppercase());
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()));
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()));
            assert!(help.contains(&format!("[env: {env}=]")), "{env} in\n{help}");
            let arg_help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(arg_help.contains("[default: "), "{id}: {arg_help}");
        }
        let d = Config::with_models_dir("models");
        for default in [
            format!("[default: {}]", d.listen),
            "[default: models]".into(),
            "[default: text]".into(),
            format!("[default: {}]", d.rescan_interval.as_secs()),
            format!("[default: {}]", d.reload_debounce.as_millis()),
            format!("[default: {}]", d.max_body_bytes),
            format!("[default: {}]", d.max_batch),
            format!("[default: {}]", d.request_timeout.as_millis()),
            format!("[default: {}]", d.max_model_bytes),
            format!("[default: {}]", d.max_inflight_requests),
            format!("[default: {}]", d.max_queue_wait.as_millis()),
            format!("[default: {}]", d.max_connections),
            format!("[default: {}]", d.listen_backlog),
            format!("[default: {}]", d.idle_timeout.as_secs()),
            format!("[default: {}]", d.write_timeout.as_millis()),
            format!("[default: {}]", d.drift_window),
            format!("[default: {}]", d.drift_window_age.as_secs()),
        ] {
            assert!(help.contains(&default), "{default} in\n{help}");
        }
    }

    #[test]
    fn every_flag_is_also_a_config_file_key() {
        for arg in Wrapper::command().get_arguments().filter(|a| !matches!(a.get_id().as_str(), "config" | "help")) {
            let id = arg.get_id().as_str();
            // The value may be the wrong type for the key; the key itself must be known.
            if let Err(e) = toml::from_str::<FileConfig>(&format!("{id} = 0")) {
                assert!(!e.to_string().contains("unknown field"), "{id}: {e}");
            }
        }
    }

    #[test]
    fn specific_policy_and_typos_and_bad_values() {
        let (_d, args) = with_file("[models.m]\nversion_policy = { specific = [1, 3] }\n");
        assert_eq!(Config::resolve(&args).unwrap().policy("m"), &VersionPolicy::Specific(vec![1, 3]));
        let (_d, args) = with_file("max_bacth = 3\n");
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("max_bacth"), "{err}");
        let (_d, args) = with_file("[models.m]\nversion_policy = { latest = 0 }\n");
        assert!(Config::resolve(&args).unwrap_err().to_string().contains("latest must be at least 1"));
        let (_d, args) = with_file("default_version_policy = { specific = [] }\n");
        assert!(Config::resolve(&args).unwrap_err().to_string().contains("at least one version"));
        let args = ServeArgs { config: Some("/nonexistent/riskserve.toml".into()), ..Default::default() };
        assert!(matches!(Config::resolve(&args), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn invalid_values_are_rejected() {
        let (_dir, models) = models_beside(None);
        let models = models.to_str().unwrap();
        for (flag, value) in [
            ("--max-batch", "0"),
            ("--rescan-interval-secs", "0"),
            ("--max-body-bytes", "0"),
            ("--request-timeout-ms", "0"),
            ("--max-model-bytes", "0"),
            ("--max-inflight-requests", "0"),
            ("--max-queue-wait-ms", "0"),
            ("--max-connections", "0"),
            ("--idle-timeout-secs", "0"),
            ("--write-timeout-ms", "0"),
        ] {
            let args = parse(&["--models-dir", models, flag, value]).unwrap();
            let err = Config::resolve(&args).unwrap_err();
            let key = flag.trim_start_matches("--").replace('-', "_");
            assert!(matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key), "{flag} {value}: {err}");
            assert!(err.to_string().contains("must be greater than zero"), "{err}");
        }
        for flags in
            [["--max-batch", "many"], ["--listen", "localhost"], ["--log-format", "xml"], ["--max-batch", "-1"]]
        {
            assert!(parse(&flags).is_err(), "{flags:?}");
        }
        for text in ["max_batch = -1\n", "listen = \"nowhere\"\n", "log_format = \"xml\"\n", "max_batch = \"7\"\n"] {
            let (_d, args) = with_file(text);
            assert!(matches!(Config::resolve(&args), Err(ConfigError::Parse { .. })), "{text}");
        }
        let (_d, args) = with_file("request_timeout_ms = 0\n");
        assert!(Config::resolve(&args).unwrap_err().to_string().contains("request_timeout_ms"));
        for value in ["0", "101"] {
            let args = parse(&["--models-dir", models, "--load-pacing-percent", value]).unwrap();
            let err = Config::resolve(&args).unwrap_err();
            assert!(err.to_string().contains("from 1 to 100"), "{value}: {err}");
        }
        for value in ["1", "50", "100"] {
            let args = parse(&["--models-dir", models, "--load-pacing-percent", value]).unwrap();
            assert_eq!(Config::resolve(&args).unwrap().load_pacing_percent.to_string(), value);
        }
    }

    #[test]
    fn the_config_file_is_found_beside_the_models_directory() {
        let (dir, models) = models_beside(Some("max_batch = 7\n"));
        let cfg = Config::resolve(&parse(&["--models-dir", models.to_str().unwrap()]).unwrap()).unwrap();
        assert_eq!(cfg.max_batch, 7);
        assert_eq!(cfg.config_file, Some(dir.path().join(DEFAULT_CONFIG_FILE)));
        // A trailing `/` or `/.` names the same directory.
        for shape in [format!("{}/", models.display()), format!("{}/.", models.display())] {
            let cfg = Config::resolve(&parse(&["--models-dir", &shape]).unwrap()).unwrap();
            assert_eq!(cfg.max_batch, 7, "{shape}");
        }
        // --config wins over the file beside the models directory.
        let (_d, mut args) = with_file("max_batch = 9\n");
        args.models_dir = Some(models);
        assert_eq!(Config::resolve(&args).unwrap().max_batch, 9);
    }

    #[test]
    fn overload_limits_default_per_core_and_a_queue_of_zero_is_allowed() {
        let d = Config::with_models_dir("models");
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(d.max_inflight_requests, INFLIGHT_PER_CORE * cores);
        assert_eq!(d.max_queued_requests, d.max_inflight_requests);
        assert_eq!(
            (d.max_connections, d.idle_timeout, d.write_timeout),
            (10_000, Duration::from_secs(60), Duration::from_secs(10))
        );
        let (_d, args) = with_file(
            "max_inflight_requests = 3\nmax_queued_requests = 0\nmax_queue_wait_ms = 5\nwrite_timeout_ms = 7\n",
        );
        let cfg = Config::resolve(&args).unwrap();
        assert_eq!((cfg.max_inflight_requests, cfg.max_queued_requests), (3, 0));
        assert_eq!((cfg.max_queue_wait, cfg.write_timeout), (Duration::from_millis(5), Duration::from_millis(7)));
    }

    #[test]
    fn the_config_file_is_not_found_from_the_current_directory() {
        // The crate root (the tests' current directory) has config/riskserve.toml;
        // a models directory elsewhere must not pick it up.
        let (_dir, models) = models_beside(None);
        let cfg = Config::resolve(&parse(&["--models-dir", models.to_str().unwrap()]).unwrap()).unwrap();
        assert_eq!(cfg.config_file, None);
        assert_eq!(cfg.max_batch, 1000);
        // The default `models` is relative, so from the repository root the
        // repository's own file is found, as `cargo run -- serve` expects.
        assert_eq!(find_config_file(None, Path::new("models")), Some(PathBuf::from(DEFAULT_CONFIG_FILE)));
    }
}
