//! The `riskserve` command line: `serve`, `train`, `evaluate`, `synth`,
//! `validate`. Each subcommand parses its flags here and calls the library.

use crate::config::{Config, ServeArgs};
use crate::model::format::{self, DecisionRule};
use crate::model::Model;
use crate::repository::layout::{self, MODEL_FILE_NAME};
use crate::repository::{local, LocalDirectory};
use crate::train::cv::{cross_validate, youden_threshold, CvReport};
use crate::train::dataset::{read_csv, write_csv, Dataset};
use crate::train::fit::{fit, progress_units, Algorithm, TrainOptions};
use crate::train::progress::Progress;
use crate::train::{build_payload, encode_io, synth};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// Check a model file exactly as the server does before loading it.
    Validate(ValidateArgs),
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

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training CSV (loan_amnt,...,home_ownership,is_late).
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
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
    #[arg(long)]
    pub threshold: Option<f64>,
    #[command(flatten)]
    pub estimator: EstimatorArgs,
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Labelled CSV to cross-validate on.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Evaluate only this algorithm (default: all, side by side).
    #[arg(long, value_enum)]
    pub algorithm: Option<Algorithm>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// A model.json (or its version directory).
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
            write_csv(&args.out, &rows)?;
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
    }
}

fn load_data(path: &Path) -> Result<Dataset> {
    let data = read_csv(path).with_context(|| format!("reading {}", path.display()))?;
    eprintln!(
        "{}: {} rows, {} late ({:.2}%)",
        path.display(),
        data.labels.len(),
        data.positives(),
        100.0 * data.positives() as f64 / data.labels.len() as f64
    );
    Ok(data)
}

fn run_cv(opts: &TrainOptions, data: &Dataset, folds: usize) -> Result<CvReport> {
    let bar = Progress::new(progress_units(opts) * folds as u64, &format!("cv {}", opts.algorithm.name()));
    let report = cross_validate(opts, data, folds, opts.seed, &|n| bar.inc(n))?;
    bar.finish();
    Ok(report)
}

fn train(args: &TrainArgs) -> Result<()> {
    layout::check_model_name(&args.model_name).map_err(anyhow::Error::msg)?;
    let repository = LocalDirectory::new(&args.models_dir);
    for r in repository.rejected_entries(&args.model_name) {
        eprintln!("warning: {}/{}: {} (ignored, as the server ignores it)", args.model_name, r.entry, r.reason);
    }
    let data = load_data(&args.data)?;
    let opts = args.estimator.options(args.algorithm);
    let report = run_cv(&opts, &data, args.folds)?;
    let metrics = report.summary(&data.labels);
    let decision = match args.threshold {
        Some(t) if t > 0.0 && t < 1.0 => DecisionRule { threshold: t, strategy: "fixed".into() },
        Some(t) => bail!("--threshold {t} must be inside (0, 1)"),
        None => DecisionRule {
            threshold: youden_threshold(&data.labels, &report.out_of_fold),
            strategy: "youden_j_out_of_fold".into(),
        },
    };

    let bar = Progress::new(progress_units(&opts), &format!("fit {}", opts.algorithm.name()));
    let started = Instant::now();
    let fitted = fit(&opts, &data.rows, &data.labels, &|n| bar.inc(n))?;
    bar.finish();
    let fit_seconds = started.elapsed().as_secs_f64();

    let published = repository
        .publish_next(&args.model_name, &|version| {
            let payload = build_payload(
                &args.model_name,
                version,
                &opts,
                &data,
                &fitted,
                decision.clone(),
                Some(metrics.clone()),
            );
            encode_io(&payload)
        })
        .with_context(|| format!("publishing under {}", args.models_dir.display()))?;
    let (version, path) = (published.version, published.path);
    // Check what was written exactly as the server will.
    let model = local::read_file(&path, format::DEFAULT_MAX_MODEL_BYTES)
        .and_then(|bytes| Model::from_bytes(&bytes))
        .context("the file just written does not load")?;
    println!("published {} version {version} -> {}", args.model_name, path.display());
    println!(
        "algorithm {}  fit {fit_seconds:.2}s on {} rows  threshold {:.4} ({})",
        opts.algorithm.name(),
        data.labels.len(),
        decision.threshold,
        decision.strategy
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
    println!("digest {}  size {} bytes", model.digest, std::fs::metadata(&path)?.len());
    Ok(())
}

fn evaluate(args: &EvaluateArgs) -> Result<()> {
    let data = load_data(&args.data)?;
    let algorithms: Vec<Algorithm> = args.algorithm.map(|a| vec![a]).unwrap_or_else(|| Algorithm::ALL.to_vec());
    let mut rows = Vec::new();
    for algorithm in algorithms {
        let opts = args.estimator.options(algorithm);
        let report = run_cv(&opts, &data, args.folds)?;
        rows.push((opts, report));
    }
    if args.json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(opts, r)| {
                let (fit_s, predict_s) = r.timing();
                serde_json::json!({
                    "algorithm": r.algorithm,
                    "hyperparameters": opts.hyperparameters(),
                    "summary": r.summary(&data.labels),
                    "fit_seconds": fit_s,
                    "predict_seconds": predict_s,
                    "folds": r.folds,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"data": data.source, "rows": data.labels.len(), "positives": data.positives(), "results": out})
            )?
        );
        return Ok(());
    }
    let base = data.positives() as f64 / data.labels.len() as f64;
    println!(
        "{}-fold stratified CV on {} ({} rows, {:.2}% late; constant base-rate Brier {:.5}), mean ± std over folds",
        args.folds,
        data.source,
        data.labels.len(),
        100.0 * base,
        base * (1.0 - base)
    );
    println!("| algorithm | ROC-AUC | PR-AUC | Brier | fit s | predict s |");
    println!("|---|---|---|---|---|---|");
    for (_, r) in &rows {
        let s = r.summary(&data.labels);
        let (fit_s, predict_s) = r.timing();
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
    Ok(())
}

fn validate(args: &ValidateArgs) -> Result<()> {
    let path = if args.path.is_dir() { args.path.join(MODEL_FILE_NAME) } else { args.path.clone() };
    let model = local::read_file(&path, args.max_model_bytes)
        .and_then(|bytes| Model::from_bytes(&bytes))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // The server reads only canonical version directories: say so before
    // the operator ships a file the server would ignore.
    let served_as = layout::name_and_version(&path).map_err(|reason| {
        anyhow::anyhow!("{}: the file is valid, but the server will not serve it: {reason}", path.display())
    })?;
    let m = &model.meta;
    println!("{}: OK", path.display());
    println!("  trained as      {} version {} at {}", m.model_name, m.model_version, m.created_at);
    if let Some((name, version)) = served_as {
        println!("  served as       {name} version {version} (from its directory)");
    }
    println!("  algorithm       {} ({} compiled nodes)", m.algorithm, model.node_count());
    println!("  threshold       {} ({})", m.decision.threshold, m.decision.strategy);
    println!("  training data   {} rows, {} late, sha256 {}", m.training.rows, m.training.positives, m.training.sha256);
    if let Some(e) = &m.metrics {
        println!("  {}  ROC-AUC {:.4} ± {:.4}  Brier {:.5}", e.method, e.roc_auc.mean, e.roc_auc.std, e.brier.mean);
    }
    println!("  payload sha256  {}", model.digest);
    Ok(())
}
