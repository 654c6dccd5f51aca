//! The `riskserve` command line: `serve`, `train`, `evaluate`, `synth`,
//! `validate`. Each subcommand parses its flags here, builds a plan, calls
//! the library and prints the outcome; no pipeline logic lives here.

use crate::config::{Config, ServeArgs};
use crate::model::format::{self, Bands, DecisionCosts};
use crate::repository::layout;
use crate::repository::local::{self, ValidatedFile};
use crate::repository::LocalDirectory;
use crate::train::assess::{across_seeds, Assessment, Scores};
use crate::train::cost::min_cost_threshold;
use crate::train::dataset::write_csv;
use crate::train::fit::{Algorithm, TrainOptions};
use crate::train::pipeline::{self, DataSummary, EvaluatePlan, Observer, ThresholdChoice, TrainPlan};
use crate::train::progress::Progress;
use crate::train::report;
use crate::train::synth;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Parser)]
#[command(name = "riskserve", version, about = "Zero-downtime, hot-reloading credit-risk model server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every model under the models directory over HTTP, hot-swapping new versions.
    Serve(ServeArgs),
    /// Train a model on a CSV and publish it as the next version.
    Train(TrainArgs),
    /// Cross-validate algorithms on a CSV (ROC-AUC, PR-AUC, Brier, timings).
    Evaluate(EvaluateArgs),
    /// Write deterministic synthetic loans with the reference schema.
    Synth(SynthArgs),
    /// Check a model file (or a model's rollout.toml) exactly as the server
    /// does before applying it.
    Validate(ValidateArgs),
    /// Publish a version directory or a model's rollout.toml to an object
    /// store (files first, then the manifest, conditionally), or remove one
    /// from its manifest.
    Publish(PublishArgs),
    /// Import a model trained elsewhere (XGBoost JSON, LightGBM text, ONNX) as
    /// the next version of a model: checked as the server will load it,
    /// its SHA-256 recorded in the version's model.toml, published
    /// atomically.
    Import(ImportArgs),
    /// Compare a CSV of recent applications with a version's training
    /// reference: PSI of each feature and of the score, and an HTML report.
    Drift(DriftArgs),
}

#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// The version directory (models/credit-risk/3) or its model.json.
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,
    /// CSV of recent applications: one column per feature, by name (other
    /// columns are ignored).
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Also write a self-contained HTML report (a chart per feature,
    /// reference against now, and the PSI table).
    #[arg(long, value_name = "FILE.html")]
    pub out: Option<PathBuf>,
}

/// Estimator flags shared by `train` and `evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EstimatorArgs {
    /// Random seed (bootstrap, feature sampling, fold assignment).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Forest: number of trees.
    #[arg(long, default_value_t = 100)]
    pub trees: u16,
    /// Forest: minimum training rows per leaf.
    #[arg(long, default_value_t = 20)]
    pub min_samples_leaf: usize,
    /// Forest: maximum depth (default unlimited).
    #[arg(long)]
    pub max_depth: Option<u16>,
    /// Forest: features tried per split (default: half the encoded columns).
    #[arg(long)]
    pub max_features: Option<usize>,
    /// Forest: rows each chunk of 5 trees is grown on (a random subset of
    /// larger data; leaf probabilities still use every row). 0 = all rows.
    #[arg(long, default_value_t = crate::train::fit::DEFAULT_MAX_SAMPLES)]
    pub max_samples: usize,
    /// Logistic regression: L2 penalty.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
}

impl EstimatorArgs {
    fn options(&self, algorithm: Algorithm) -> TrainOptions {
        let mut o = TrainOptions::new(algorithm, self.seed);
        o.trees = self.trees.max(1);
        o.min_samples_leaf = self.min_samples_leaf.max(1);
        o.max_depth = self.max_depth;
        o.max_features = self.max_features;
        o.max_samples = (self.max_samples > 0).then_some(self.max_samples);
        o.alpha = self.alpha;
        o
    }
}

/// Which columns of a training CSV are the target and the features.
#[derive(Debug, Clone, clap::Args)]
pub struct ColumnArgs {
    /// The 0/1 target column; every other column is a feature.
    #[arg(long, default_value = crate::model::input::TARGET)]
    pub target: String,
    /// Only these columns are features, in this order.
    #[arg(long, value_delimiter = ',', value_name = "COLUMN,...")]
    pub features: Option<Vec<String>>,
    /// Read these columns as categories even when they hold numbers.
    #[arg(long, value_delimiter = ',', value_name = "COLUMN,...")]
    pub categorical: Vec<String>,
    /// Features a request may leave out (imputed, and counted in
    /// riskserve_imputed_features_total).
    #[arg(long, value_delimiter = ',', value_name = "COLUMN,...")]
    pub optional: Vec<String>,
    /// The accepted range of a number feature, instead of the rule
    /// (`term=0:600`); repeat for several.
    #[arg(long, value_name = "COLUMN=MIN:MAX", value_parser = parse_range)]
    pub range: Vec<(String, f64, f64)>,
}

impl ColumnArgs {
    fn options(&self) -> crate::train::dataset::CsvOptions {
        crate::train::dataset::CsvOptions {
            target: self.target.clone(),
            features: self.features.clone(),
            categorical: self.categorical.clone(),
            optional: self.optional.clone(),
            ranges: self.range.clone(),
        }
    }
}

fn parse_range(text: &str) -> Result<(String, f64, f64), String> {
    let bad = || format!("expected COLUMN=MIN:MAX (term=0:600), got `{text}`");
    let (name, range) = text.split_once('=').ok_or_else(bad)?;
    let (lo, hi) = range.split_once(':').ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(format!("the range of `{name}` must be finite with MIN <= MAX"));
    }
    Ok((name.trim().to_string(), lo, hi))
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training CSV: a 0/1 target column (`--target`, default is_late) and
    /// feature columns.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Model name: the directory under --models-dir.
    #[arg(long, default_value = "credit-risk")]
    pub model_name: String,
    /// Models directory; the new version is written to <dir>/<name>/<next>/model.json.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    #[arg(long, value_enum, default_value = "forest")]
    pub algorithm: Algorithm,
    /// Folds for the cross-validated metrics recorded in the file (and for
    /// choosing the threshold).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Fixed decision threshold on probability_late, instead of the
    /// out-of-fold Youden-J choice.
    #[arg(long, conflicts_with = "cost_false_negative")]
    pub threshold: Option<f64>,
    #[command(flatten)]
    pub costs: CostArgs,
    /// Decision bands recorded in the file, e.g.
    /// `approve:0.02,review:0.06,decline` (name:upper-cutoff, last open).
    #[arg(long, value_name = "NAME:CUTOFF,...,NAME")]
    pub bands: Option<String>,
    /// Also write a self-contained HTML report of the cross-validation.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub estimator: EstimatorArgs,
    /// After writing the version locally, publish it to this object store
    /// (s3://bucket/prefix, gs://…, az://…, file:///dir), as `riskserve publish` does.
    #[arg(long, value_name = "URL")]
    pub publish_to: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Object store to publish to: s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix or file:///dir. Credentials and endpoint come
    /// from the cloud's environment variables (docs/object-store.md).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The version directory to publish (models/credit-risk/7) or a model's
    /// rollout file (models/credit-risk/rollout.toml); with --remove, the
    /// version (credit-risk/7) or rollout file (credit-risk/rollout.toml) to
    /// take out of the manifest.
    #[arg(value_name = "DIR|ROLLOUT", required_unless_present = "gc", conflicts_with = "gc")]
    pub path: Option<PathBuf>,
    /// Remove the version or rollout file from the manifest instead:
    /// replicas stop serving a removed version once they serve another, then
    /// delete their copy; a removed rollout file ends the rollout everywhere.
    #[arg(long)]
    pub remove: bool,
    /// Remove the store's files that no manifest generation replaced less
    /// than --older-than ago names, and that are older than that themselves.
    #[arg(long, conflicts_with = "remove")]
    pub gc: bool,
    /// The grace period of --gc (e.g. 30m, 1h, 2d; default 1h): at least
    /// the longest download a replica may be in the middle of.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,
}

/// Parses `90s`, `15m`, `1h`, `2d` (a whole number and a unit).
fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let n: u64 =
        number.parse().map_err(|_| format!("{text:?}: expected a whole number and a unit (s, m, h, d), e.g. 1h"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d, e.g. 30m")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(seconds)))
}

/// Decision costs shared by `train` (choose the threshold) and `evaluate`
/// (the report's expected-cost curve).
#[derive(Debug, Clone, clap::Args)]
pub struct CostArgs {
    /// Money lost approving a loan that pays late; with
    /// --cost-false-positive, `train` picks the threshold of least
    /// expected cost on the out-of-fold predictions.
    #[arg(long, requires = "cost_false_positive")]
    pub cost_false_negative: Option<f64>,
    /// Margin lost declining a loan that would have paid on time.
    #[arg(long, requires = "cost_false_negative")]
    pub cost_false_positive: Option<f64>,
}

impl CostArgs {
    fn costs(&self) -> Option<DecisionCosts> {
        Some(DecisionCosts { false_negative: self.cost_false_negative?, false_positive: self.cost_false_positive? })
    }
}

/// Parses `approve:0.02,review:0.06,decline`.
fn parse_bands(text: &str) -> Result<Bands> {
    let mut names = Vec::new();
    let mut cutoffs = Vec::new();
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    for (i, part) in parts.iter().enumerate() {
        match part.split_once(':') {
            Some((name, cutoff)) if i + 1 < parts.len() => {
                names.push(name.trim().to_string());
                cutoffs.push(cutoff.trim().parse::<f64>().map_err(|e| anyhow::anyhow!("--bands: `{cutoff}`: {e}"))?);
            }
            None if i + 1 == parts.len() => names.push(part.to_string()),
            _ => anyhow::bail!("--bands: write NAME:CUTOFF for every band but the last, which is just NAME"),
        }
    }
    let bands = Bands { names, cutoffs };
    bands.validate().map_err(|e| anyhow::anyhow!("--bands: {e}"))?;
    Ok(bands)
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Labelled CSV to cross-validate on.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    #[command(flatten)]
    pub columns: ColumnArgs,
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Evaluate only this algorithm (default: all, side by side).
    #[arg(long, value_enum)]
    pub algorithm: Option<Algorithm>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Repeat the cross-validation with each of these fold seeds and report
    /// mean ± std across them (default: --seed only).
    #[arg(long, value_delimiter = ',', value_name = "SEED,...")]
    pub seeds: Vec<u64>,
    /// Also write a self-contained HTML report (first algorithm evaluated).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Costs for the report's expected-cost curve (default 5000 / 300).
    #[command(flatten)]
    pub costs: CostArgs,
    #[command(flatten)]
    pub estimator: EstimatorArgs,
}

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    #[arg(long)]
    pub rows: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_name = "FILE.csv")]
    pub out: PathBuf,
    /// Also write two more columns: `term` (36 or 60 months) and
    /// `verification_status`, with some missing cells (for a model with new
    /// features).
    #[arg(long)]
    pub extra_features: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The model file: XGBoost `Booster.save_model("….json")`, LightGBM
    /// `Booster.save_model("….txt")`, or a scikit-learn pipeline exported
    /// by skl2onnx (`….onnx`).
    pub file: PathBuf,
    /// Model name: the directory under --models-dir.
    #[arg(long)]
    pub model_name: String,
    /// Models directory; the new version is written to <dir>/<name>/<next>/.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// A model.toml to start from: decision threshold, costs or bands, and
    /// per-feature units, ranges, labels, help and `required` (docs/import.md).
    #[arg(long, value_name = "model.toml")]
    pub settings: Option<PathBuf>,
    /// A CSV of applications (the training population) to score through
    /// the model before publishing; their bins are recorded in model.toml as
    /// the version's drift reference (columns named as the model's
    /// features; blank cells are missing).
    #[arg(long, value_name = "FILE.csv")]
    pub reference: Option<PathBuf>,
    /// After writing the version locally, publish it to this object store,
    /// as `riskserve publish` does.
    #[arg(long, value_name = "URL")]
    pub publish_to: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// A model.json (or its version directory), or a model's rollout.toml.
    pub path: PathBuf,
    /// Largest model file accepted, as for `serve`.
    #[arg(long, default_value_t = format::DEFAULT_MAX_MODEL_BYTES)]
    pub max_model_bytes: u64,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(&args)?;
            crate::telemetry::init(config.log_format);
            match &config.config_file {
                Some(path) => tracing::info!(file = %path.display(), "read config file"),
                None => tracing::info!("no config file; using flags, environment and defaults"),
            }
            crate::server::run_blocking(config)
        }
        Command::Train(args) => train(&args),
        Command::Evaluate(args) => evaluate(&args),
        Command::Synth(args) => {
            let rows = synth::generate(args.rows, args.seed);
            let extra = if args.extra_features { synth::extra_features(&rows, args.seed) } else { Vec::new() };
            write_csv(&args.out, &rows, &extra)?;
            let late = rows.iter().filter(|(_, y)| *y == 1).count();
            println!(
                "wrote {} rows ({late} late, {:.2}%) to {}",
                rows.len(),
                100.0 * late as f64 / rows.len().max(1) as f64,
                args.out.display()
            );
            Ok(())
        }
        Command::Validate(args) => validate(&args),
        Command::Publish(args) => publish(&args),
        Command::Import(args) => import(&args),
        Command::Drift(args) => drift(&args),
    }
}

fn import(args: &ImportArgs) -> Result<()> {
    let plan = crate::importer::ImportPlan {
        file: args.file.clone(),
        model_name: args.model_name.clone(),
        models_dir: args.models_dir.clone(),
        settings: args.settings.clone(),
        reference: args.reference.clone(),
    };
    let out = crate::importer::run(&plan)?;
    let m = &out.model;
    println!(
        "imported {} as {} version {}: {}",
        args.file.display(),
        args.model_name,
        out.published.version,
        out.published.path.display()
    );
    println!("  format          {} ({} compiled nodes)", m.meta.algorithm, m.node_count());
    println!("  inputs          {}", inputs_line(m.fields.features()));
    println!("  threshold       {} ({})", m.meta.decision.threshold, m.meta.decision.strategy);
    println!("  sha256          {} (recorded in model.toml)", out.digest);
    if let Some(r) = &out.reference {
        println!(
            "  reference       {} rows scored: mean P(late) {:.5}, {:.2}% high_risk (bins recorded for drift)",
            r.rows,
            r.mean_probability,
            100.0 * r.high_risk_share
        );
    }
    if let Some(url) = &args.publish_to {
        let dir = out.published.path.parent().unwrap_or(&out.published.path);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let store = crate::sync::store::Store::open(url)?;
        let published = runtime.block_on(crate::sync::publish::publish_dir(&store, dir))?;
        report_published(&published, url, false);
    }
    Ok(())
}

/// The model a `<…>/<model>/rollout.toml` path belongs to, if it names a rollout file.
fn rollout_model(path: &std::path::Path) -> Result<Option<String>> {
    if path.file_name().is_none_or(|n| n != layout::ROLLOUT_FILE_NAME) {
        return Ok(None);
    }
    let model = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow::anyhow!("{}: expected <models>/<model>/rollout.toml", path.display()))?;
    layout::check_model_name(&model).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some(model))
}

/// `publish` of a rollout file (`--remove`: its removal).
fn publish_rollout_file(args: &PublishArgs, model: &str) -> Result<()> {
    use crate::sync::publish;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = crate::sync::store::Store::open(&args.to)?;
    let what = format!("{model}/{}", layout::ROLLOUT_FILE_NAME);
    if args.remove {
        let c = runtime.block_on(publish::unpublish_rollout(&store, model))?;
        println!("removed {what} from {}: manifest generation {}; replicas end the rollout", args.to, c.generation);
        return Ok(());
    }
    let path = args.path.as_deref().unwrap_or(std::path::Path::new(""));
    let bytes = local::read_file(path, crate::registry::rollout::MAX_ROLLOUT_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let c = runtime.block_on(publish::publish_rollout(&store, model, bytes.into()))?;
    if c.changed {
        println!("published {what} to {}: manifest generation {}", args.to, c.generation);
    } else {
        println!("{what} is already published to {} with these bytes (manifest generation {})", args.to, c.generation);
    }
    Ok(())
}

/// `publish --gc`.
fn collect_garbage(args: &PublishArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = crate::sync::store::Store::open(&args.to)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let older_than = args.older_than.unwrap_or(std::time::Duration::from_secs(3600));
    let r = runtime.block_on(crate::sync::gc::collect(&store, older_than, now))?;
    println!(
        "gc of {}: removed {} unreferenced file(s); kept {} named by generation(s) {:?} and {} younger than {:?}; \
         removed {} old manifest history cop(y/ies)",
        args.to,
        r.removed.len(),
        r.kept_referenced,
        r.generations_kept,
        r.kept_recent,
        older_than,
        r.history_removed
    );
    Ok(())
}

fn publish(args: &PublishArgs) -> Result<()> {
    use crate::sync::publish;
    if args.gc {
        return collect_garbage(args);
    }
    if args.older_than.is_some() {
        anyhow::bail!("--older-than is the grace period of --gc; add --gc, or leave it out");
    }
    let path = args.path.clone().unwrap_or_default();
    if let Some(model) = rollout_model(&path)? {
        return publish_rollout_file(args, &model);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = crate::sync::store::Store::open(&args.to)?;
    let outcome = runtime.block_on(async {
        if args.remove {
            let text = path.to_string_lossy();
            let (model, version) = text
                .trim_end_matches('/')
                .rsplit_once('/')
                .and_then(|(m, v)| Some((m.rsplit('/').next()?.to_string(), layout::parse_version(v)?)))
                .ok_or_else(|| anyhow::anyhow!("--remove takes <model>/<version>, e.g. credit-risk/7; got {text}"))?;
            Ok::<_, anyhow::Error>(publish::unpublish(&store, &model, version).await?)
        } else {
            Ok(publish::publish_dir(&store, &path).await?)
        }
    })?;
    report_published(&outcome, &args.to, args.remove);
    Ok(())
}

fn report_published(p: &crate::sync::publish::Published, url: &str, removed: bool) {
    let what = if removed { "removed" } else { "published" };
    if p.changed {
        println!(
            "{what} {} version {} {} {url}: manifest generation {} ({} file(s) uploaded{})",
            p.model,
            p.version,
            if removed { "from" } else { "to" },
            p.generation,
            p.uploaded,
            if p.retries > 0 { format!(", merged after {} concurrent publish(es)", p.retries) } else { String::new() }
        );
    } else {
        println!(
            "{} version {} is already published to {url} with these bytes (manifest generation {})",
            p.model, p.version, p.generation
        );
    }
}

/// Draws the pipeline's stages as progress bars on stderr and reports the data read.
#[derive(Default)]
struct Bars {
    current: Mutex<Option<Progress>>,
}

impl Bars {
    fn current(&self) -> std::sync::MutexGuard<'_, Option<Progress>> {
        // A panic while drawing leaves nothing to protect: keep going.
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Observer for Bars {
    fn data_loaded(&self, data: &DataSummary) {
        eprintln!(
            "{}: {} rows, {} late ({:.2}%)",
            data.path.display(),
            data.rows,
            data.positives,
            100.0 * data.late_rate()
        );
    }

    fn stage_started(&self, label: &str, units: u64) {
        *self.current() = Some(Progress::new(units, label));
    }

    fn advanced(&self, units: u64) {
        if let Some(bar) = self.current().as_ref() {
            bar.inc(units);
        }
    }

    fn stage_finished(&self) {
        if let Some(bar) = self.current().take() {
            bar.finish();
        }
    }
}

fn train(args: &TrainArgs) -> Result<()> {
    let plan = TrainPlan {
        data: args.data.clone(),
        columns: args.columns.options(),
        model_name: args.model_name.clone(),
        destination: LocalDirectory::new(&args.models_dir),
        options: args.estimator.options(args.algorithm),
        folds: args.folds,
        threshold: match (args.threshold, args.costs.costs()) {
            (Some(t), _) => ThresholdChoice::Fixed(t),
            (None, Some(costs)) => ThresholdChoice::MinExpectedCost(costs),
            (None, None) => ThresholdChoice::YoudenOutOfFold,
        },
        bands: args.bands.as_deref().map(parse_bands).transpose()?,
    };
    let out = pipeline::train(&plan, &Bars::default())?;
    for r in &out.ignored {
        eprintln!("warning: {}/{}: {} (ignored, as the server ignores it)", out.model_name, r.entry, r.reason);
    }
    let metrics = &out.metrics;
    println!("published {} version {} -> {}", out.model_name, out.version, out.path.display());
    println!(
        "algorithm {}  fit {:.2}s on {} rows  threshold {:.4} ({})",
        out.algorithm, out.fit_seconds, out.data.rows, out.decision.threshold, out.decision.strategy
    );
    println!(
        "{}-fold CV: ROC-AUC {:.4} ± {:.4}  PR-AUC {:.4} ± {:.4}  Brier {:.5} ± {:.5} (base rate {:.5})",
        metrics.folds,
        metrics.roc_auc.mean,
        metrics.roc_auc.std,
        metrics.pr_auc.mean,
        metrics.pr_auc.std,
        metrics.brier.mean,
        metrics.brier.std,
        metrics.brier_base_rate
    );
    print_calibration(&out.assessment);
    if let Some(cost) = out.decision.expected_cost_per_1000 {
        println!("expected cost per 1,000 applications at the threshold (out of fold): {cost:.0}");
    }
    println!("digest {}  size {} bytes", out.digest, out.file_bytes);
    if let Some(path) = &args.report {
        let costs = out.decision.costs.unwrap_or(report::DEFAULT_COSTS);
        let input = report::ReportInput {
            title: format!("{} version {}", out.model_name, out.version),
            data: &out.data,
            folds: args.folds,
            runs: std::slice::from_ref(&out.assessment),
            threshold: out.decision.threshold,
            strategy: &out.decision.strategy,
            costs,
        };
        std::fs::write(path, report::render(&input))?;
        println!("report written to {}", path.display());
    }
    if let Some(url) = &args.publish_to {
        let dir = out.path.parent().unwrap_or(&out.path);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let store = crate::sync::store::Store::open(url)?;
        let published = runtime.block_on(crate::sync::publish::publish_dir(&store, dir))?;
        report_published(&published, url, false);
    }
    Ok(())
}

/// Calibration before and after, with the reliability bins.
fn print_calibration(a: &Assessment) {
    let c = &a.calibration;
    let method = c.calibration.as_ref().map_or("none (neither beat the raw probability)", |m| m.method());
    println!(
        "calibration: {method}  (cross-fitted Brier of each candidate: {})",
        c.candidates.iter().map(|(n, b, _)| format!("{n} {b:.6}")).collect::<Vec<_>>().join(", ")
    );
    println!("| out of fold | Brier | log loss | ECE |");
    println!("|---|---|---|---|");
    for (label, m) in [("before", &c.before), ("after", &c.after)] {
        println!("| {label} | {:.6} | {:.5} | {:.5} |", m.brier, m.log_loss, m.ece);
    }
    println!("reliability bins (equal count): mean predicted -> observed late rate");
    for (b, a) in c.before.bins.iter().zip(&c.after.bins) {
        println!(
            "  {:>5} rows  before {:.4} -> {:.4}   after {:.4} -> {:.4}",
            b.rows, b.predicted, b.observed, a.predicted, a.observed
        );
    }
}

fn evaluate(args: &EvaluateArgs) -> Result<()> {
    let algorithms: Vec<Algorithm> = args.algorithm.map(|a| vec![a]).unwrap_or_else(|| Algorithm::ALL.to_vec());
    let plan = EvaluatePlan {
        data: args.data.clone(),
        columns: args.columns.options(),
        candidates: algorithms.into_iter().map(|a| args.estimator.options(a)).collect(),
        folds: args.folds,
        seeds: args.seeds.clone(),
    };
    let out = pipeline::evaluate(&plan, &Bars::default())?;
    let data = &out.data;
    if args.json {
        let results: Vec<serde_json::Value> = out
            .results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "algorithm": r.algorithm,
                    "hyperparameters": r.options.hyperparameters(),
                    "summary": r.summary,
                    "fit_seconds": r.fit_seconds,
                    "predict_seconds": r.predict_seconds,
                    "folds": r.folds,
                    "seeds": r.assessments,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"data": data.source, "rows": data.rows, "positives": data.positives, "results": results})
            )?
        );
        return Ok(());
    }
    let base = data.late_rate();
    println!(
        "{}-fold stratified CV on {} ({} rows, {:.2}% late; constant base-rate Brier {:.5}), mean ± std over folds",
        args.folds,
        data.source,
        data.rows,
        100.0 * base,
        base * (1.0 - base)
    );
    println!("| algorithm | ROC-AUC | PR-AUC | Brier | fit s | predict s |");
    println!("|---|---|---|---|---|---|");
    for r in &out.results {
        let (s, fit_s, predict_s) = (&r.summary, &r.fit_seconds, &r.predict_seconds);
        println!(
            "| {} | {:.4} ± {:.4} | {:.4} ± {:.4} | {:.5} ± {:.5} | {:.3} ± {:.3} | {:.4} ± {:.4} |",
            r.algorithm,
            s.roc_auc.mean,
            s.roc_auc.std,
            s.pr_auc.mean,
            s.pr_auc.std,
            s.brier.mean,
            s.brier.std,
            fit_s.mean,
            fit_s.std,
            predict_s.mean,
            predict_s.std
        );
    }
    let seeds: Vec<String> =
        out.results.first().map_or(vec![], |r| r.assessments.iter().map(|a| a.seed.to_string()).collect());
    println!();
    println!("Raw and calibrated out-of-fold probabilities, mean ± std across seeds {} (ROC-AUC, PR-AUC: mean over folds; Brier, log loss, ECE: pooled out-of-fold rows):", seeds.join(", "));
    println!("| algorithm | probability | ROC-AUC | PR-AUC | Brier | log loss | ECE |");
    println!("|---|---|---|---|---|---|---|");
    for r in &out.results {
        let runs = &r.assessments;
        for (label, pick) in [("raw", false), ("calibrated", true)] {
            let s = |f: fn(&Scores) -> f64| {
                let m = across_seeds(runs, |a| f(if pick { &a.calibrated } else { &a.raw }));
                (m.mean, m.std)
            };
            let methods: Vec<&str> =
                runs.iter().map(|a| a.calibration.calibration.as_ref().map_or("none", |c| c.method())).collect();
            let label = if pick { format!("{label} ({})", methods.join("/")) } else { label.to_string() };
            let (auc, pr, br, ll, ece) =
                (s(|x| x.roc_auc), s(|x| x.pr_auc), s(|x| x.brier), s(|x| x.log_loss), s(|x| x.ece));
            println!(
                "| {} | {label} | {:.4} ± {:.4} | {:.4} ± {:.4} | {:.5} ± {:.5} | {:.4} ± {:.4} | {:.4} ± {:.4} |",
                r.algorithm, auc.0, auc.1, pr.0, pr.1, br.0, br.1, ll.0, ll.1, ece.0, ece.1
            );
        }
    }
    if let (Some(path), Some(r)) = (&args.report, out.results.first()) {
        let costs = args.costs.costs().unwrap_or(report::DEFAULT_COSTS);
        let calibrated: Vec<f64> = r.assessments.first().map_or(vec![], |a| a.calibration.calibrated.clone());
        let labels = r.assessments.first().map_or(vec![], |a| a.labels.clone());
        let best = min_cost_threshold(&labels, &calibrated, costs);
        let input = report::ReportInput {
            title: format!("{} on {}", r.algorithm, data.source),
            data,
            folds: args.folds,
            runs: &r.assessments,
            threshold: best.threshold,
            strategy: "min_expected_cost_out_of_fold",
            costs,
        };
        std::fs::write(path, report::render(&input))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

/// A version's inputs in one line: `loan_amnt (number 0..=10000000),
/// grade (category, 7), term (number 0..=600, optional)`.
fn inputs_line(features: &[crate::model::schema::Feature]) -> String {
    use crate::model::schema::Kind;
    let one = |f: &crate::model::schema::Feature| {
        let kind = match &f.kind {
            Kind::Number { min, max, unit, .. } => {
                let range =
                    if *min == f64::MIN && *max == f64::MAX { String::new() } else { format!(" {min}..={max}") };
                format!("number{range}{}", unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default())
            }
            Kind::Category { categories, .. } => format!("category, {} known", categories.len()),
        };
        let optional = if f.required { "" } else { ", optional" };
        format!("{} ({kind}{optional})", f.name)
    };
    features.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// `validate` of a rollout file: the loader's rules, and which of the
/// versions it names are present beside it.
fn validate_rollout(path: &std::path::Path, model: &str) -> Result<()> {
    let bytes = local::read_file(path, crate::registry::rollout::MAX_ROLLOUT_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let policy = crate::registry::rollout::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    println!("{}: OK (rollout of {model})", path.display());
    match policy.stable {
        Some(v) => println!("  stable          version {v}"),
        None => println!("  stable          the highest loaded version that is neither canary nor shadow"),
    }
    if let Some(c) = policy.canary {
        let share = f64::from(c.weight_bp) / f64::from(crate::registry::rollout::WEIGHT_SCALE) * 100.0;
        println!("  canary          version {} at {share} % of unpinned traffic", c.version);
    }
    if let Some(v) = policy.shadow {
        println!("  shadow          version {v}");
    }
    println!("  request key     {}", policy.request_key);
    let g = &policy.guards;
    println!(
        "  guards          min_requests {}, max_error_rate {}, max_latency_ratio {}, max_decision_shift {}, max_psi {}, promote_after {}",
        g.min_requests, g.max_error_rate, g.max_latency_ratio, g.max_decision_shift, g.max_psi, g.promote_after
    );
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let missing: Vec<String> = policy
        .named_versions()
        .into_iter()
        .filter(|v| !dir.join(v.to_string()).join(layout::MODEL_FILE_NAME).is_file())
        .map(|v| v.to_string())
        .collect();
    if !missing.is_empty() {
        println!(
            "  note            version(s) {} not in {}: the rollout waits until they load",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(())
}

fn drift(args: &DriftArgs) -> Result<()> {
    let compared = crate::drift::offline::compare_csv(&args.model_dir, &args.data)?;
    print!("{}", compared.table());
    if let Some(path) = &args.out {
        std::fs::write(path, compared.render()).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

fn validate(args: &ValidateArgs) -> Result<()> {
    if let Some(model) = rollout_model(&args.path)? {
        return validate_rollout(&args.path, &model);
    }
    let ValidatedFile { path, model, served_as } = local::validate_file(&args.path, args.max_model_bytes)?;
    let m = &model.meta;
    println!("{}: OK", path.display());
    if m.model_name.is_empty() {
        println!("  imported        {} file (it records no name, version or training data)", m.algorithm);
    } else {
        println!("  trained as      {} version {} at {}", m.model_name, m.model_version, m.created_at);
    }
    if let Some((name, version)) = served_as {
        println!("  served as       {name} version {version} (from its directory)");
    }
    println!("  algorithm       {} ({} compiled nodes)", m.algorithm, model.node_count());
    println!("  inputs          {}", inputs_line(model.fields.features()));
    println!("  threshold       {} ({})", m.decision.threshold, m.decision.strategy);
    if !m.training.sha256.is_empty() {
        println!(
            "  training data   {} rows, {} late, sha256 {}",
            m.training.rows, m.training.positives, m.training.sha256
        );
    }
    if let Some(e) = &m.metrics {
        println!("  {}  ROC-AUC {:.4} ± {:.4}  Brier {:.5}", e.method, e.roc_auc.mean, e.roc_auc.std, e.brier.mean);
    }
    println!("  payload sha256  {}", model.digest);
    Ok(())
}
