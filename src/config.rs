//! Server configuration, resolved once into a typed [`Config`]:
//! built-in defaults < `config/riskserve.toml` (or `--config FILE`) <
//! `RISKSERVE_*` environment variables < command-line flags. clap reads the
//! flags and their environment variables into [`ServeArgs`]; tests build a
//! `ServeArgs` directly instead of touching the process environment.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default config file, read when present and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "config/riskserve.toml";

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

/// `riskserve serve` flags. Each may also be set by its environment variable
/// or in the config file (same name, `_` instead of `-`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Config file (TOML). Default: config/riskserve.toml if it exists.
    #[arg(long, env = "RISKSERVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding <model-name>/<version>/model.json. Default: models
    #[arg(long, env = "RISKSERVE_MODELS_DIR", value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Address to listen on. Default: 127.0.0.1:8080
    #[arg(long, env = "RISKSERVE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log format; the level comes from RUST_LOG (default info). Default: text
    #[arg(long, env = "RISKSERVE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Seconds between full rescans of the models directory, repairing any
    /// missed filesystem event. Default: 30
    #[arg(long, env = "RISKSERVE_RESCAN_INTERVAL_SECS", value_name = "SECS")]
    pub rescan_interval_secs: Option<u64>,
    /// Quiet period that coalesces a burst of filesystem events into one
    /// reload, in milliseconds. Default: 20
    #[arg(long, env = "RISKSERVE_RELOAD_DEBOUNCE_MS", value_name = "MS")]
    pub reload_debounce_ms: Option<u64>,
    /// Largest request body accepted, in bytes (413 above). Default: 1048576
    #[arg(long, env = "RISKSERVE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest number of instances in one batch request (400 above). Default: 1000
    #[arg(long, env = "RISKSERVE_MAX_BATCH", value_name = "N")]
    pub max_batch: Option<usize>,
    /// Time allowed to receive a request's headers and body, in milliseconds (408 after). Default: 10000
    #[arg(long, env = "RISKSERVE_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default: 30
    #[arg(long, env = "RISKSERVE_SHUTDOWN_TIMEOUT_SECS", value_name = "SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Largest model file that will be read, in bytes. Default: 268435456
    #[arg(long, env = "RISKSERVE_MAX_MODEL_BYTES", value_name = "BYTES")]
    pub max_model_bytes: Option<u64>,
}

/// The config file's shape. Unknown keys are errors, so typos are caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    models_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    rescan_interval_secs: Option<u64>,
    reload_debounce_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    max_batch: Option<usize>,
    request_timeout_ms: Option<u64>,
    shutdown_timeout_secs: Option<u64>,
    max_model_bytes: Option<u64>,
    /// Version policy for models without their own entry.
    default_version_policy: Option<VersionPolicy>,
    #[serde(default)]
    models: BTreeMap<String, ModelConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelConfig {
    version_policy: VersionPolicy,
}

/// The resolved, validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub models_dir: PathBuf,
    pub log_format: LogFormat,
    pub rescan_interval: Duration,
    pub reload_debounce: Duration,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_model_bytes: u64,
    /// A model load (read + verify + compile + warm-up) that takes longer is
    /// abandoned and counted as `timeout`.
    pub load_timeout: Duration,
    /// Readiness turns 503 when no reload pass has completed for this long.
    pub reload_stale_after: Duration,
    /// Follow symlinks that resolve outside the models directory.
    pub follow_symlinks_outside_models_dir: bool,
    pub default_policy: VersionPolicy,
    pub policies: BTreeMap<String, VersionPolicy>,
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

impl Config {
    /// A configuration with every default, serving `models_dir`.
    pub fn with_models_dir(models_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            models_dir: models_dir.into(),
            log_format: LogFormat::Text,
            rescan_interval: Duration::from_secs(30),
            reload_debounce: Duration::from_millis(20),
            max_body_bytes: 1024 * 1024,
            max_batch: 1000,
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            max_model_bytes: crate::model::format::DEFAULT_MAX_MODEL_BYTES,
            load_timeout: Duration::from_secs(30),
            reload_stale_after: Duration::from_secs(120),
            follow_symlinks_outside_models_dir: false,
            default_policy: VersionPolicy::default(),
            policies: BTreeMap::new(),
        }
    }

    /// Resolves flags/env over the config file over defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => read_file(Path::new(DEFAULT_CONFIG_FILE))?,
            None => FileConfig::default(),
        };
        let d = Config::with_models_dir("models");
        let cfg = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            models_dir: args.models_dir.clone().or(file.models_dir).unwrap_or(d.models_dir),
            log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
            rescan_interval: args
                .rescan_interval_secs
                .or(file.rescan_interval_secs)
                .map(Duration::from_secs)
                .unwrap_or(d.rescan_interval),
            reload_debounce: args
                .reload_debounce_ms
                .or(file.reload_debounce_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.reload_debounce),
            max_body_bytes: args.max_body_bytes.or(file.max_body_bytes).unwrap_or(d.max_body_bytes),
            max_batch: args.max_batch.or(file.max_batch).unwrap_or(d.max_batch),
            request_timeout: args
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.request_timeout),
            shutdown_timeout: args
                .shutdown_timeout_secs
                .or(file.shutdown_timeout_secs)
                .map(Duration::from_secs)
                .unwrap_or(d.shutdown_timeout),
            max_model_bytes: args.max_model_bytes.or(file.max_model_bytes).unwrap_or(d.max_model_bytes),
            load_timeout: d.load_timeout,
            reload_stale_after: d.reload_stale_after,
            follow_symlinks_outside_models_dir: d.follow_symlinks_outside_models_dir,
            default_policy: file.default_version_policy.unwrap_or_default(),
            policies: file.models.into_iter().map(|(k, v)| (k, v.version_policy)).collect(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid { key, message: "must be greater than zero".into() })
            }
        };
        positive("rescan_interval_secs", !self.rescan_interval.is_zero())?;
        positive("max_body_bytes", self.max_body_bytes > 0)?;
        positive("max_batch", self.max_batch > 0)?;
        positive("request_timeout_ms", !self.request_timeout.is_zero())?;
        positive("max_model_bytes", self.max_model_bytes > 0)?;
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

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str) -> (tempfile::TempDir, ServeArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("riskserve.toml");
        std::fs::write(&path, text).unwrap();
        (dir, ServeArgs { config: Some(path), ..Default::default() })
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let (_dir, mut args) = with_file(
            "listen = \"127.0.0.1:9000\"\nmax_batch = 50\n\n[models.credit-risk]\nversion_policy = { latest = 2 }\n\n\
             [models.other]\nversion_policy = \"all\"\n",
        );
        let cfg = Config::resolve(&args).unwrap();
        assert_eq!(cfg.listen.port(), 9000);
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
    fn specific_policy_and_typos_and_bad_values() {
        let (_d, args) = with_file("[models.m]\nversion_policy = { specific = [1, 3] }\n");
        assert_eq!(Config::resolve(&args).unwrap().policy("m"), &VersionPolicy::Specific(vec![1, 3]));
        let (_d, args) = with_file("max_bacth = 3\n");
        let err = Config::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("max_bacth"), "{err}");
        let (_d, args) = with_file("[models.m]\nversion_policy = { latest = 0 }\n");
        assert!(Config::resolve(&args).unwrap_err().to_string().contains("latest must be at least 1"));
        let args = ServeArgs { config: Some("/nonexistent/riskserve.toml".into()), ..Default::default() };
        assert!(matches!(Config::resolve(&args), Err(ConfigError::Read { .. })));
    }
}
