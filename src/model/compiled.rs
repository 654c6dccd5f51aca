//! [`Model`]: a version's file validated and compiled (its inputs, the
//! encoder, the estimator in flat arrays, the decision rule, calibration),
//! ready to score rows without allocating and to explain them.

use super::calibration::Calibration;
use super::encoder::{Encoder, MAX_ENCODED_WIDTH};
use super::estimator::{CompiledEstimator, Estimator};
use super::explain::{Attribution, ExplainInfo, Reason};
use super::fields::Fields;
use super::format::{self, LoadError, ModelMeta, ModelPayload};
use super::limits::ModelLimits;
use super::reference::Reference;
use super::row::{Row, Rows, RowsView, Value};
use super::scorer::{Decision, Prediction, Scorer};
use super::shap::{Shap, TreeShap};
use super::{forest, schema};

/// Encoded widths below this (the bundled model's is 41) score from a
/// smaller stack buffer (the width plus the padding column must fit).
const SMALL_WIDTH: usize = 64;
/// The same for imported models, whose set splits make them a few hundred
/// columns wide (the XGBoost model of the real sample: 221).
const MEDIUM_WIDTH: usize = 256;

impl Scorer for Model {
    fn fields(&self) -> &Fields {
        &self.fields
    }
    #[inline]
    fn predict(&self, row: Row<'_>) -> Prediction {
        Model::predict(self, row)
    }
    fn predict_many(&self, rows: RowsView<'_>, out: &mut Vec<Prediction>) {
        Model::predict_many(self, rows, out)
    }
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }
    fn digest(&self) -> &str {
        &self.digest
    }
    fn attribution(&self, row: Row<'_>) -> Option<Attribution> {
        Some(Model::attribution(self, row))
    }
    fn explain_info(&self) -> Option<ExplainInfo> {
        Some(Model::explain_info(self))
    }
    fn shap(&self, row: Row<'_>) -> Option<Shap> {
        let shap = self.shap.as_ref()?;
        Some(self.with_row(row, |x| shap.explain(x)))
    }
    fn predict_with_reasons(&self, row: Row<'_>, top: usize) -> (Prediction, Option<Vec<Reason>>) {
        let (prediction, reasons) = Model::predict_with_reasons(self, row, top);
        (prediction, Some(reasons))
    }
    fn reference(&self) -> Option<&Reference> {
        self.reference.as_ref()
    }
}

/// A model version ready to score: its inputs, encoder, compiled
/// estimator, threshold and the metadata recorded in its file.
#[derive(Debug)]
pub struct Model {
    pub meta: ModelMeta,
    pub fields: Fields,
    pub encoder: Encoder,
    /// SHA-256 of the file's payload.
    pub digest: String,
    estimator: CompiledEstimator,
    calibration: Option<Calibration>,
    /// The training population's bins, for drift monitoring.
    pub reference: Option<Reference>,
    width: usize,
    /// The probability explanations start from.
    base_value: f64,
    /// The estimator's base score ([`CompiledEstimator::base_score`]), kept
    /// so explaining a row does not sum the trees' root means again.
    base_score: f64,
    /// Tree SHAP over the file's trees, when they record covers.
    pub(crate) shap: Option<TreeShap>,
}

impl Model {
    /// Validates a decoded payload (schema, estimator, threshold, cost
    /// budget) and compiles it, then runs smoke predictions. Everything the
    /// server checks before a version may serve.
    pub fn from_payload(payload: ModelPayload, digest: String, limits: ModelLimits) -> Result<Model, LoadError> {
        let invalid = |e: String| LoadError::Invalid(e);
        let ModelPayload { meta, schema, estimator, calibration, reference: population } = payload;
        let fields = Fields::new(schema).map_err(|e| invalid(format!("schema: {e}")))?;
        // The schema first: a reference can only fit a valid one.
        if let Some(r) = &population {
            r.validate(fields.schema()).map_err(|e| invalid(format!("reference: {e}")))?;
        }
        if let Some(f) =
            fields.features().iter().find(|f| matches!(f.kind, schema::Kind::Number { imputed_with: None, .. }))
        {
            return Err(invalid(format!(
                "schema: number feature `{}` has no imputed_with; riskserve's own models impute every missing number",
                f.name
            )));
        }
        let encoder = Encoder::new(&fields);
        let width = encoder.width();
        if width > MAX_ENCODED_WIDTH {
            return Err(invalid(format!(
                "schema: encoded width {width} exceeds the limit of {MAX_ENCODED_WIDTH} columns (max_encoded_width)"
            )));
        }
        // A linear model without recorded column means is explained
        // against the all-missing application (medians, `missing`).
        let reference = || {
            let mut x = vec![0.0; width];
            let mut rows = Rows::new(fields.len());
            rows.push_missing();
            encoder.encode_into(rows.row(0), &mut x);
            x
        };
        let compiled = estimator.compile_with(width, reference).map_err(|e| invalid(format!("estimator: {e}")))?;
        // A forest's SHAP values are on its own probability scale (before
        // any calibration): the mean of its trees'.
        let shap = match &estimator {
            Estimator::RandomForest { trees } => {
                let space = if calibration.is_some() { "uncalibrated_probability" } else { "probability" };
                let scale = 1.0 / trees.len().max(1) as f64;
                TreeShap::new(trees, None, encoder.column_features(), fields.len(), scale, 0.0, space)
            }
            Estimator::LogisticRegression { .. } => None,
        };
        drop(estimator);
        let mut model = Model::from_compiled(meta, fields, encoder, compiled, calibration, digest, limits)?;
        model.shap = shap;
        model.reference = population;
        Ok(model)
    }

    /// Checks a compiled estimator against its budget and the decision
    /// rule, computes what explanations need, and smoke-tests it: the
    /// part of loading every format shares ([`super::import`] too).
    pub fn from_compiled(
        meta: ModelMeta,
        fields: Fields,
        encoder: Encoder,
        mut compiled: CompiledEstimator,
        calibration: Option<Calibration>,
        digest: String,
        limits: ModelLimits,
    ) -> Result<Model, LoadError> {
        let invalid = |e: String| LoadError::Invalid(e);
        let width = encoder.width();
        compiled.index_features(encoder.column_features());
        let cost = compiled.cost();
        if cost > limits.max_prediction_cost {
            return Err(invalid(format!(
                "prediction cost: one prediction visits up to {cost} tree nodes, more than the budget of {} (max_prediction_cost)",
                limits.max_prediction_cost
            )));
        }
        let t = meta.decision.threshold;
        if !(t > 0.0 && t < 1.0) {
            return Err(invalid(format!("decision threshold {t} is not inside (0, 1)")));
        }
        if let Some(bands) = &meta.decision.bands {
            bands.validate().map_err(invalid)?;
        }
        if let Some(c) = &calibration {
            c.validate().map_err(|e| invalid(format!("calibration: {e}")))?;
        }
        let mut model = Model {
            meta,
            fields,
            encoder,
            digest,
            estimator: compiled,
            calibration,
            reference: None,
            width,
            base_value: 0.0,
            base_score: 0.0,
            shap: None,
        };
        model.base_score = model.estimator.base_score();
        model.base_value = model.to_probability(model.base_score);
        model.smoke_test()?;
        Ok(model)
    }

    /// Verifies, validates and compiles the bytes of a model file (read by a
    /// [`crate::repository::ModelSource`]) under the default [`ModelLimits`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, LoadError> {
        Model::from_bytes_with(bytes, ModelLimits::default())
    }

    /// [`Model::from_bytes`] under the given limits (the server passes its
    /// configured `max_prediction_cost`).
    pub fn from_bytes_with(bytes: &[u8], limits: ModelLimits) -> Result<Model, LoadError> {
        let (payload, digest) = format::decode(bytes)?;
        Model::from_payload(payload, digest, limits)
    }

    /// Scores one row. Allocation-free.
    #[inline]
    pub fn predict(&self, row: Row<'_>) -> Prediction {
        self.decide(self.raw_probability(row).clamp(0.0, 1.0))
    }

    fn decide(&self, p: f64) -> Prediction {
        let decision = if p >= self.meta.decision.threshold { Decision::HighRisk } else { Decision::LowRisk };
        Prediction { probability_late: p, decision }
    }

    /// [`Model::predict`] and [`Model::attribution`] from one walk of the
    /// trees: the attribution's probability is the prediction's.
    pub fn predict_explained(&self, row: Row<'_>) -> (Prediction, Attribution) {
        let attribution = self.attribution(row);
        (self.decide(attribution.probability), attribution)
    }

    /// [`Model::predict_explained`] and the attribution's `top` reasons
    /// ([`Attribution::reasons`]): what a request with reasons gets. The
    /// attribution (half a kilobyte) stays on this stack frame instead of
    /// being copied out with the prediction.
    pub fn predict_with_reasons(&self, row: Row<'_>, top: usize) -> (Prediction, Vec<Reason>) {
        let attribution = self.attribution(row);
        (self.decide(attribution.probability), attribution.reasons(row, top))
    }

    /// Scores many rows, appending one prediction each to `out`. Rows are
    /// encoded a block at a time and a forest walks each block tree by tree
    /// ([`CompiledEstimator::probabilities_in`]): the same answers, bit for
    /// bit, as [`Model::predict`] on each row.
    pub fn predict_many(&self, rows: RowsView<'_>, out: &mut Vec<Prediction>) {
        // One row (most requests): the stack buffer of `predict`, not a
        // block buffer on the heap.
        if rows.len() == 1 {
            out.push(self.predict(rows.row(0)));
            return;
        }
        /// Rows per block: four of the forest's row groups. A block of the
        /// bundled model's rows, at the forest's stride of 64 values, is
        /// 24 KB, walked where it is, in the L1 cache beside the nodes.
        /// (`batch_1000_model_only`, per row: blocks of 64 rows 1.29 µs,
        /// 48 1.26, 36 1.26, with twelve rows side by side.)
        const BLOCK: usize = 4 * forest::ROW_LANES;
        /// A wide model's rows (an imported model's set splits) are walked
        /// one by one, so fewer of them per block keep the block in L1:
        /// at most this many bytes. (The real sample's XGBoost model, 221
        /// columns: blocks of 48 rows, 85 KB, cost more per row than one
        /// row at a time.)
        const BLOCK_BYTES: usize = 16 * 1024;
        let stride = self.estimator.batch_stride();
        let per_block = (BLOCK_BYTES / (stride * 8)).clamp(1, BLOCK);
        let per_block = if per_block < forest::ROW_LANES { per_block } else { BLOCK };
        let mut buf = vec![0.0f64; per_block.min(rows.len()) * stride];
        let mut raw = [0.0f64; BLOCK];
        out.reserve(rows.len());
        let mut start = 0;
        while start < rows.len() {
            let block = rows.slice(start..(start + per_block).min(rows.len()));
            for (row, x) in block.iter().zip(buf.chunks_exact_mut(stride)) {
                self.encoder.encode_into(row, &mut x[..self.width]);
            }
            let raw = &mut raw[..block.len()];
            self.estimator.probabilities_in(&mut buf, stride, raw);
            out.extend(raw.iter().map(|&p| self.decide(self.calibrated(p).clamp(0.0, 1.0))));
            start += block.len();
        }
    }

    /// Encode into a stack buffer and score (calibrated when the file has a
    /// calibration), without clamping.
    #[inline]
    fn raw_probability(&self, row: Row<'_>) -> f64 {
        self.with_row(row, |x| self.calibrated(self.estimator.probability_in(x)))
    }

    /// Calls `f` with `row` encoded into a stack buffer of the model's
    /// width plus the padding column a forest reads. The buffer is as small
    /// as the model allows: zeroing all [`MAX_ENCODED_WIDTH`] columns cost
    /// more than the rest of the encoding.
    #[inline(always)]
    fn with_row<R>(&self, row: Row<'_>, f: impl FnOnce(&mut [f64]) -> R) -> R {
        if self.width < SMALL_WIDTH {
            let mut buf = [0.0f64; SMALL_WIDTH];
            self.encoder.encode_into(row, &mut buf[..self.width]);
            f(&mut buf)
        } else if self.width < MEDIUM_WIDTH {
            let mut buf = [0.0f64; MEDIUM_WIDTH];
            self.encoder.encode_into(row, &mut buf[..self.width]);
            f(&mut buf[..=self.width])
        } else {
            let mut buf = [0.0f64; MAX_ENCODED_WIDTH + 1];
            self.encoder.encode_into(row, &mut buf[..self.width]);
            f(&mut buf[..=self.width])
        }
    }

    /// The file's calibration applied to an estimator probability.
    #[inline]
    fn calibrated(&self, p: f64) -> f64 {
        match &self.calibration {
            Some(c) => c.apply(p),
            None => p,
        }
    }

    /// The served probability for an estimator score (see
    /// [`CompiledEstimator::contributions`]), clamped to [0, 1].
    fn to_probability(&self, score: f64) -> f64 {
        self.calibrated(self.estimator.score_to_probability(score)).clamp(0.0, 1.0)
    }

    /// Splits the prediction for `row` exactly into [`Self::explain_info`]'s
    /// base value plus one contribution per feature (see [`explain`]).
    /// Allocation-free; only runs when an explanation is asked for.
    pub fn attribution(&self, row: Row<'_>) -> Attribution {
        let features = self.fields.len();
        let mut attribution = Attribution::new(0.0, self.base_value, features);
        let out = &mut attribution.contributions[..features];
        let score =
            self.with_row(row, |x| self.estimator.feature_contributions_in(x, self.encoder.column_features(), out));
        let base_score = self.base_score;
        let probability = self.to_probability(score);
        // One positive factor carries the score-scale contributions onto
        // the probability scale (the map is monotone), so they keep their
        // order and add up to probability − base_value.
        let moved = score - base_score;
        let factor = if moved.abs() > 1e-12 { (probability - self.base_value) / moved } else { 1.0 };
        for c in out.iter_mut() {
            *c *= factor;
        }
        attribution.probability = probability;
        attribution
    }

    /// The explanation method and base value.
    pub fn explain_info(&self) -> ExplainInfo {
        ExplainInfo { method: self.estimator.explain_method(), base_value: self.base_value }
    }

    /// Number of compiled tree nodes (0 for linear models).
    pub fn node_count(&self) -> usize {
        self.estimator.node_count()
    }

    /// Worst-case work of one prediction: tree nodes visited (the sum over
    /// trees of depth + 1), or coefficients for a linear model.
    pub fn prediction_cost(&self) -> u64 {
        self.estimator.cost()
    }

    /// Warm-up and sanity check: an all-missing row and one row per known
    /// category must score to a probability in [0, 1].
    fn smoke_test(&self) -> Result<(), LoadError> {
        let mut probe = vec![Value::Missing; self.fields.len()];
        let check = |values: &[Value]| {
            let p = self.raw_probability(Row::of(values));
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(LoadError::Invalid(format!("smoke prediction returned {p}, not a probability")))
            }
        };
        check(&probe)?;
        for (i, f) in self.fields.features().iter().enumerate() {
            for code in 0..f.categories().len() {
                probe[i] = Value::Category(code as u32);
                check(&probe)?;
            }
            probe[i] = Value::Missing;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::*;
    use super::super::input::{cat, LoanApplication};
    use super::super::test_support::{predict_app, tiny_payload};
    use super::*;
    use crate::model::limits;

    fn model_from(bytes: &[u8]) -> Result<Model, LoadError> {
        Model::from_bytes(bytes)
    }

    #[test]
    fn model_file_round_trips_exactly() {
        let payload = tiny_payload();
        let bytes = encode(&payload).unwrap();
        let (back, digest) = decode(&bytes).unwrap();
        assert_eq!(back, payload);
        assert_eq!(digest.len(), 64);
        let model = Model::from_payload(back, digest, ModelLimits::default()).unwrap();
        let mut app = LoanApplication::default();
        app.categorical[cat::GRADE] = Some("B".into());
        let p = predict_app(&model, &app);
        assert_eq!(p.probability_late, 0.3);
        assert_eq!(p.decision, Decision::HighRisk);
        app.categorical[cat::GRADE] = Some("never-seen".into());
        assert_eq!(predict_app(&model, &app).decision, Decision::LowRisk);
    }

    #[test]
    fn every_truncation_is_incomplete_or_invalid_never_loaded() {
        let bytes = encode(&tiny_payload()).unwrap();
        for cut in [0, 1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 3] {
            let err = model_from(&bytes[..cut]).unwrap_err();
            assert_eq!(err.kind(), "incomplete", "cut at {cut}: {err}");
        }
        // Every prefix is rejected, not only the sampled ones.
        for cut in 0..bytes.len() - 2 {
            assert!(model_from(&bytes[..cut]).is_err(), "prefix of {cut} bytes loaded");
        }
    }

    #[test]
    fn a_flipped_bit_in_the_payload_is_a_digest_mismatch() {
        let bytes = encode(&tiny_payload()).unwrap();
        let at = bytes.windows(5).position(|w| w == b"0.02,").unwrap() + 3; // the '2'
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01; // '2' -> '3': still valid JSON
        let err = model_from(&flipped).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("digest mismatch"), "{err}");
    }

    fn bundled_model() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/credit-risk/1/model.json")).unwrap()
    }

    #[test]
    fn the_bundled_model_passes_every_limit_and_its_cost_is_the_documented_figure() {
        let model = Model::from_bytes(&bundled_model()).unwrap();
        assert_eq!(model.prediction_cost(), limits::BUNDLED_PREDICTION_COST);
        assert_eq!(limits::DEFAULT_MAX_PREDICTION_COST, 50 * model.prediction_cost());
        // Decoded and compiled memory stays well inside the documented multiple.
        let compiled = model.node_count() * 24;
        assert!((compiled as u64) < bundled_model().len() as u64, "{compiled} bytes compiled");
    }

    /// Speed never changes an answer: the compiled model (trees walked side
    /// by side) gives the probabilities of the straightforward path — the
    /// one-hot row smartcore was trained on, each tree of the file walked
    /// node by node, averaged — on 10,000 synthetic rows (the `synth`
    /// generator, with its missing values) plus unseen categories.
    #[test]
    fn the_compiled_model_equals_the_straightforward_path_on_10000_rows() {
        let (payload, digest) = decode(&bundled_model()).unwrap();
        let estimator = payload.estimator.clone();
        let model = Model::from_payload(payload, digest, ModelLimits::default()).unwrap();
        let mut apps: Vec<LoanApplication> =
            crate::train::synth::generate(10_000, 2026).into_iter().map(|(app, _)| app).collect();
        for (i, row) in apps.iter_mut().enumerate().step_by(97) {
            row.categorical[i % 4] = Some("never-seen-in-training".into());
        }
        apps.push(LoanApplication::default());
        let rows = model.fields.loan_rows(&apps);
        let x = model.encoder.encode_rows(rows.view());
        let mut worst = 0.0f64;
        for ((app, row), x) in apps.iter().zip(rows.iter()).zip(x.chunks_exact(model.encoder.width())) {
            let reference = estimator.reference_probability(x);
            let fast = model.predict(row);
            worst = worst.max((fast.probability_late - reference).abs());
            assert!(
                (fast.probability_late - reference).abs() <= 1e-12,
                "{app:?}: {} vs {reference}",
                fast.probability_late
            );
            let high = reference >= model.meta.decision.threshold;
            assert_eq!(fast.decision == Decision::HighRisk, high, "{app:?}");
            let (explained, attribution) = model.predict_explained(row);
            assert_eq!(explained, fast, "explaining never changes the answer: {app:?}");
            // What a request with reasons gets: the same answer and the
            // attribution's reasons, through the model and the trait.
            let top = app.numeric[0].map_or(4, |v| v as usize % 12);
            let want = (fast, Some(attribution.reasons(row, top)));
            assert_eq!(model.predict_with_reasons(row, top), (want.0, want.1.clone().unwrap()), "{app:?}");
            assert_eq!(Scorer::predict_with_reasons(&model, row, top), want, "{app:?}");
            let total = attribution.base_value + attribution.contributions().iter().sum::<f64>();
            assert!((total - fast.probability_late).abs() <= 1e-9, "{app:?}: {total} vs {}", fast.probability_late);
        }
        assert_eq!(worst, 0.0, "the same sums in the same order: bit-for-bit equal");
        // Many rows at once (whole blocks, a partial last block), the same bits.
        for n in [1, 7, 12, 13, 48, 49, 64, 65, rows.len()] {
            let mut many = Vec::new();
            model.predict_many(rows.view().slice(0..n), &mut many);
            let one_by_one: Vec<Prediction> = rows.iter().take(n).map(|r| model.predict(r)).collect();
            assert_eq!(many, one_by_one, "{n} rows");
        }
    }

    /// Explaining adds each reached leaf's precomputed terms: by feature,
    /// the same contributions as crediting every split on the walk.
    #[test]
    fn leaf_terms_give_the_walks_contributions_by_feature() {
        let model = Model::from_bytes(&bundled_model()).unwrap();
        let apps: Vec<LoanApplication> =
            crate::train::synth::generate(2_000, 31).into_iter().map(|(app, _)| app).collect();
        let rows = model.fields.loan_rows(&apps);
        let features = model.encoder.column_features();
        for row in rows.iter() {
            let mut x = [0.0; SMALL_WIDTH];
            model.encoder.encode_into(row, &mut x[..model.width]);
            let mut cols = [0.0; SMALL_WIDTH];
            let walked = model.estimator.contributions_in(&mut x.clone(), &mut cols[..model.width]);
            let mut by_walk = vec![0.0; model.fields.len()];
            for (c, &f) in cols[..model.width].iter().zip(features) {
                by_walk[f as usize] += c;
            }
            let mut by_leaf = vec![0.0; model.fields.len()];
            let score = model.estimator.feature_contributions_in(&mut x, features, &mut by_leaf);
            assert_eq!(score, walked, "the same score, bit for bit");
            for (a, b) in by_walk.iter().zip(&by_leaf) {
                assert!((a - b).abs() <= 1e-12, "{by_walk:?} vs {by_leaf:?}");
            }
        }
    }

    #[test]
    fn a_version_over_the_prediction_budget_is_invalid_naming_the_budget() {
        let bytes = bundled_model();
        let cost = limits::BUNDLED_PREDICTION_COST;
        let at = |max_prediction_cost| Model::from_bytes_with(&bytes, ModelLimits { max_prediction_cost });
        assert!(at(cost).is_ok());
        let err = at(cost - 1).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains(&format!("up to {cost} tree nodes")), "{err}");
        assert!(err.to_string().contains("max_prediction_cost"), "{err}");
    }

    #[test]
    fn oversized_hyperparameters_are_invalid_and_unknown_fields_are_ignored() {
        let mut payload = tiny_payload();
        let big = "x".repeat(limits::MAX_HYPERPARAMETERS_BYTES);
        payload.meta.hyperparameters.insert("notes".into(), big.into());
        let err = model_from(&encode(&payload).unwrap()).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("max_hyperparameters_bytes"), "{err}");

        let mut value = serde_json::to_value(tiny_payload()).unwrap();
        value["added_in_a_later_build"] = serde_json::json!({"nested": [1, 2, 3]});
        let (back, _) = decode(&envelope_around(&value.to_string())).unwrap();
        assert_eq!(back, tiny_payload());
    }

    /// A model file around an arbitrary payload text, with its correct digest.
    fn envelope_around(payload: &str) -> Vec<u8> {
        let digest = sha256_hex(payload.as_bytes());
        format!(r#"{{"format":"riskserve-model","format_version":1,"payload_sha256":"{digest}","payload":{payload}}}"#)
            .into_bytes()
    }

    #[test]
    fn wrong_format_version_and_wrong_schema_are_invalid_with_reasons() {
        let bytes = encode(&tiny_payload()).unwrap();
        let text = String::from_utf8(bytes).unwrap().replacen("\"format_version\":3", "\"format_version\":9", 1);
        assert!(model_from(text.as_bytes()).unwrap_err().to_string().contains("format_version 9"));

        let mut payload = tiny_payload();
        payload.schema.features.push(payload.schema.features[0].clone());
        let err = model_from(&encode(&payload).unwrap()).unwrap_err();
        assert!(err.to_string().contains("schema"), "{err}");

        let mut payload = tiny_payload();
        payload.meta.decision.threshold = 1.5;
        assert!(model_from(&encode(&payload).unwrap()).unwrap_err().to_string().contains("threshold"));

        assert!(model_from(b"{\"hello\": 1}").unwrap_err().to_string().contains("not a riskserve model"));
    }

    /// Property tests of the model-file loader: whatever the bytes, the
    /// answer is a model or a `LoadError`, never a panic, within bounded time.
    mod properties {
        use super::*;
        use crate::model::estimator::Estimator;
        use crate::model::fuzz::{self, apply, edits};
        use crate::model::tree::Tree;
        use proptest::prelude::*;
        use std::time::{Duration, Instant};

        /// Far above any input here (a few KB); a loop or a blow-up would exceed it.
        const BOUND: Duration = Duration::from_secs(5);

        fn load_within_bound(bytes: &[u8]) -> Result<Result<Model, LoadError>, TestCaseError> {
            let started = Instant::now();
            let result = Model::from_bytes(bytes);
            prop_assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
            if let Ok(model) = &result {
                let p = predict_app(model, &LoanApplication::default()).probability_late;
                prop_assert!((0.0..=1.0).contains(&p));
            }
            Ok(result)
        }

        #[test]
        fn the_corpus_gives_what_each_file_name_says() {
            for (name, bytes) in fuzz::corpus("model") {
                let result = load_within_bound(&bytes).unwrap();
                let got = result.as_ref().map(|_| "ok").unwrap_or_else(LoadError::kind);
                let expected = name.split('-').next().unwrap();
                assert_eq!(got, expected, "{name}: {:?}", result.err());
            }
        }

        proptest! {
            #![proptest_config(fuzz::config())]

            #[test]
            fn arbitrary_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                prop_assert!(load_within_bound(&bytes)?.is_err());
            }

            #[test]
            fn mutated_files_load_or_are_refused(
                seed in proptest::sample::select(fuzz::corpus("model")),
                edits in edits(),
            ) {
                let _ = load_within_bound(&apply(&seed.1, &edits))?;
            }

            /// Mutations of the payload under a recomputed digest, so the
            /// decoding, schema, compile and smoke checks are all reached.
            #[test]
            fn mutated_payloads_with_a_valid_digest_load_or_are_refused(
                seed in proptest::sample::select(fuzz::corpus("model")),
                edits in edits(),
            ) {
                let text = String::from_utf8_lossy(&seed.1).into_owned();
                let payload = text.find("\"payload\":").map(|at| &text[at + 10..]).unwrap_or(&text);
                let payload = payload.trim_end().strip_suffix('}').unwrap_or(payload);
                let mutated = String::from_utf8_lossy(&apply(payload.as_bytes(), &edits)).into_owned();
                let _ = load_within_bound(&envelope_around(&mutated))?;
            }

            /// Random trees, mostly malformed: compiled or refused, never a
            /// panic or an endless walk; a compiled forest scores in [0, 1].
            #[test]
            fn random_trees_compile_or_are_refused(
                trees in proptest::collection::vec(
                    (1..40usize).prop_flat_map(|n| (
                        proptest::collection::vec(-2..8i32, n),
                        proptest::collection::vec(prop_oneof![Just(f64::NAN), -2.0..2.0f64], n),
                        proptest::collection::vec(0..n as u32 + 2, n),
                        proptest::collection::vec(0..n as u32 + 2, n),
                        proptest::collection::vec(-0.5..1.5f64, n),
                    )),
                    1..4,
                ),
                x in proptest::collection::vec(-2.0..2.0f64, 6),
            ) {
                let trees = trees
                    .into_iter()
                    .map(|(feature, threshold, left, right, value)| Tree { feature, threshold, left, right, value, samples: vec![] })
                    .collect();
                if let Ok(compiled) = (Estimator::RandomForest { trees }).compile(6) {
                    let p = compiled.probability(&x);
                    prop_assert!((0.0..=1.0).contains(&p), "{p}");
                }
            }
        }
    }
}
