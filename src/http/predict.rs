//! The prediction path every protocol shares (`/v1` predict and OIP
//! infer): the declared length, an admission slot, the body under the size
//! limit and the deadline, the protocol's decoder, the version the request
//! resolves to (pins and rollouts), scoring inline or on the request worker
//! pool (big batches split across it), rollout guards and the shadow, the
//! per-version inference metrics, and the `x-model-version` header. Each
//! protocol's route parses its own body and writes its own answer. Every
//! scored row is counted for drift by the version that answered it
//! (shadow copies are not).

use super::admission::{Shed, Slot};
use super::body::{read_body, RequestBody};
use super::error::{lookup_error, ApiError};
use super::request::Decoder;
use super::state::AppState;
use super::text::split_at_byte;
#[cfg(doc)]
use crate::model::explain::ShownReasons;
use crate::model::explain::{Reason, ReasonValue, DEFAULT_REASONS, MAX_REASONS};
use crate::model::fields::Fields;
use crate::model::row::{Rows, RowsView, Value};
use crate::model::shap::Shap;
use crate::model::{Decision, Prediction};
use crate::registry::LoadedVersion;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, CONTENT_LENGTH};
use hyper::{HeaderMap, Response};
use std::sync::Arc;
use std::time::Instant;

/// Batches larger than this are scored on a blocking thread, so a big batch
/// does not hold up the async workers.
const INLINE_BATCH: usize = 64;
/// Batches at least this big are split across the request worker pool.
const SPLIT_BATCH: usize = 256;
/// Bodies larger than this are parsed on a blocking thread.
const INLINE_BODY_BYTES: usize = 64 * 1024;
/// Scoring checks the deadline after each block of this many applications.
const DEADLINE_CHECK_EVERY: usize = 64;

/// A declared `Content-Length` over the limit is refused before admission.
pub(super) fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(())
}

/// A slot for this request, or 503 + `Retry-After`, counted.
pub(crate) async fn admit(state: &AppState, deadline: tokio::time::Instant) -> Result<Slot<'_>, ApiError> {
    state.admission.admit(deadline).await.map_err(|shed: Shed| {
        state.shed(shed.reason());
        ApiError::overloaded(shed.to_string())
    })
}

/// Runs `work` on the request worker pool, answering 503 if the deadline
/// passes first (the work itself checks the deadline and stops soon after).
async fn off_thread<T: Send + 'static>(
    state: &AppState,
    deadline: tokio::time::Instant,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::time::timeout_at(deadline, state.workers.run(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(ApiError::internal(format!("prediction task failed: {e}"))),
        Err(_) => Err(ApiError::deadline_exceeded()),
    }
}

/// One prediction as answered: the probability and decision, the decision
/// band when the model configures bands, and the reason codes unless
/// `?explain=false` (or `?reasons=0`).
#[derive(Debug)]
pub struct Answered {
    pub prediction: Prediction,
    pub(super) band: Option<String>,
    pub(crate) reasons: Option<Vec<Reason>>,
    /// Exact SHAP values, with `?explain=shap`.
    pub(super) shap: Option<Shap>,
}

impl Answered {
    /// The answer with its reasons (no band).
    pub fn with_reasons(prediction: Prediction, reasons: Vec<Reason>) -> Answered {
        Answered { prediction, band: None, reasons: Some(reasons), shap: None }
    }
}

impl From<Prediction> for Answered {
    /// The answer without a band or reasons.
    fn from(prediction: Prediction) -> Answered {
        Answered { prediction, band: None, reasons: None, shap: None }
    }
}

impl Answered {
    /// Appends its JSON object, by hand (the keys are constants; see
    /// [`super::response::PredictResponse`]); `fields` name the reasons.
    pub(super) fn write_json(&self, fields: &Fields, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(br#"{"probability_late":"#);
        serde_json::to_writer(&mut *out, &self.prediction.probability_late)?;
        out.extend_from_slice(br#","decision":""#);
        out.extend_from_slice(self.prediction.decision.as_str().as_bytes());
        out.push(b'"');
        if let Some(band) = &self.band {
            out.extend_from_slice(br#","band":"#);
            serde_json::to_writer(&mut *out, band)?;
        }
        if let Some(reasons) = &self.reasons {
            out.extend_from_slice(br#","reasons":"#);
            write_reasons(reasons, fields, out)?;
        }
        if let Some(shap) = &self.shap {
            write_shap(shap, fields, out)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// Its reasons as the JSON array `/v1` answers with (`[]` without any):
    /// the OIP `reasons` output's element.
    pub(crate) fn reasons_json(&self, fields: &Fields) -> String {
        let mut out = Vec::new();
        self.append_reasons_json(fields, &mut out);
        // Every piece is valid JSON written by serde or from the fields.
        String::from_utf8(out).unwrap_or_else(|_| "[]".into())
    }

    /// Appends [`Self::reasons_json`] to `out`, with no copy of its own.
    pub(crate) fn append_reasons_json(&self, fields: &Fields, out: &mut Vec<u8>) {
        let at = out.len();
        if write_reasons(self.reasons.as_deref().unwrap_or_default(), fields, out).is_err() {
            out.truncate(at);
            out.extend_from_slice(b"[]");
        }
    }
}

/// Appends `reasons` as a JSON array.
fn write_reasons(reasons: &[Reason], fields: &Fields, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.push(b'[');
    for (k, r) in reasons.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_reason(r, fields, out)?;
    }
    out.push(b']');
    Ok(())
}

/// `,"shap":{"scale":…,"base_value":…,"values":{"<feature>":…,…}}`: every
/// feature's SHAP value, in schema order.
fn write_shap(shap: &Shap, fields: &Fields, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(br#","shap":{"scale":""#);
    out.extend_from_slice(shap.scale.as_bytes());
    out.extend_from_slice(br#"","base_value":"#);
    serde_json::to_writer(&mut *out, &shap.base_value)?;
    out.extend_from_slice(br#","values":{"#);
    for (f, v) in shap.values().iter().enumerate() {
        if f > 0 {
            out.push(b',');
        }
        out.extend_from_slice(fields.name_json(f).as_bytes());
        out.push(b':');
        serde_json::to_writer(&mut *out, v)?;
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

/// Appends one reason as [`ShownReasons`] (the definition) writes it: the
/// feature's name and a known category's text come as JSON from the
/// version's fields, built at load, not escaped per request.
fn write_reason(r: &Reason, fields: &Fields, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let f = usize::from(r.feature);
    out.extend_from_slice(br#"{"feature":"#);
    out.extend_from_slice(fields.name_json(f).as_bytes());
    out.extend_from_slice(br#","value":"#);
    match &r.value {
        ReasonValue::Number(v) => serde_json::to_writer(&mut *out, v)?,
        ReasonValue::Category(code) => out.extend_from_slice(fields.category_json(f, *code).as_bytes()),
        ReasonValue::Text(text) => serde_json::to_writer(&mut *out, text)?,
        ReasonValue::Missing => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","contribution":"#);
    serde_json::to_writer(&mut *out, &r.contribution)?;
    let imputed: &[u8] = if r.value == ReasonValue::Missing { br#","imputed":true}"# } else { br#","imputed":false}"# };
    out.extend_from_slice(imputed);
    Ok(())
}

/// The predict routes' query parameters: `explain=true|false` (default
/// true) and `reasons=N` (0..=10, default 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExplainQuery {
    /// How many reasons each prediction carries; `None` = no `reasons` field.
    reasons: Option<usize>,
    /// `explain=shap`: exact SHAP values instead of reasons.
    shap: bool,
}

impl ExplainQuery {
    /// No reason codes (the OIP outputs have no place for them).
    pub(crate) const NONE: ExplainQuery = ExplainQuery { reasons: None, shap: false };
    /// The default number of reasons (the OIP `reasons` output).
    pub(crate) const DEFAULT: ExplainQuery = ExplainQuery { reasons: Some(DEFAULT_REASONS), shap: false };

    /// These reasons (or SHAP values) if any are asked for, else `other`'s.
    fn or(self, other: ExplainQuery) -> ExplainQuery {
        if self.reasons.is_some() || self.shap {
            self
        } else {
            other
        }
    }

    pub(super) fn parse(query: Option<&str>) -> Result<ExplainQuery, ApiError> {
        let mut explain = true;
        let mut shap = false;
        let mut reasons = DEFAULT_REASONS;
        for pair in split_at_byte(query.unwrap_or(""), b'&').filter(|p| !p.is_empty()) {
            let (key, value) = match pair.bytes().position(|b| b == b'=') {
                // `=` is ASCII: both sides are character boundaries.
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, ""),
            };
            match key {
                "explain" => {
                    shap = value == "shap";
                    explain = match value {
                        "true" | "1" | "" => true,
                        "false" | "0" | "shap" => false,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "query parameter `explain` must be true, false or shap, got `{}`",
                                other.chars().take(32).collect::<String>()
                            )))
                        }
                    }
                }
                "reasons" => {
                    reasons = value.parse().ok().filter(|n| *n <= MAX_REASONS).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "query parameter `reasons` must be a whole number from 0 to {MAX_REASONS}, got `{}`",
                            value.chars().take(32).collect::<String>()
                        ))
                    })?
                }
                _ => {}
            }
        }
        Ok(ExplainQuery { reasons: explain.then_some(reasons), shap })
    }
}

/// What the shared prediction path hands back: the version that answered,
/// what the decoder kept from the body beside the applications, and one
/// prediction per application.
pub(crate) struct Scored<T> {
    pub version: Arc<LoadedVersion>,
    pub request: T,
    pub predictions: Vec<Answered>,
}

/// One prediction request as a protocol's route hands it over: the model
/// (and the version pinned in the path, if any), the reasons asked for, the
/// request's headers and body, and its deadline.
pub(super) struct PredictionRequest<'a, B> {
    pub name: &'a str,
    pub pinned: Option<u64>,
    pub explain: ExplainQuery,
    pub headers: &'a HeaderMap,
    pub body: B,
    pub deadline: tokio::time::Instant,
}

/// The prediction path every HTTP route shares (`/v1` predict, OIP infer):
/// declared length → admission slot → body under the size limit and the
/// deadline → [`score_decoded`] with the protocol's parser (`decode`; on a
/// worker thread for big bodies). The caller checks its content type first
/// and writes its own answer; `explain_of` says which reasons the decoded
/// request asks for (`/v1`: its query; OIP: the `reasons` output).
pub(super) async fn run_prediction<B, T, F, E>(
    state: &AppState,
    request: PredictionRequest<'_, B>,
    decode: F,
    explain_of: E,
) -> Result<Scored<T>, ApiError>
where
    B: RequestBody,
    T: Send + 'static,
    F: FnOnce(&[u8], Decoder<'_>) -> Result<(T, Rows), ApiError> + Send + 'static,
    E: FnOnce(&T) -> ExplainQuery,
{
    let PredictionRequest { name, pinned, explain, headers, body, deadline } = request;
    let limit = state.config.max_body_bytes;
    check_declared_length(headers, limit)?;
    let _slot = admit(state, deadline).await?;
    let body = read_body(limit, body, deadline).await?;
    let target = Target { name, pinned, explain, headers, deadline };
    let size = body.len();
    score_decoded(state, target, size, move |decoder| decode(&body, decoder), explain_of).await
}

/// What a prediction is for, once its request has arrived: the model (and
/// the pinned version, if any), the reasons asked for (unless the decoded
/// request asks for some), the request's headers
/// or gRPC metadata (a rollout's sticky key is one), and the deadline.
pub(crate) struct Target<'a> {
    pub name: &'a str,
    pub pinned: Option<u64>,
    pub explain: ExplainQuery,
    pub headers: &'a HeaderMap,
    pub deadline: tokio::time::Instant,
}

/// The prediction path every protocol shares once a request holds its
/// admission slot and has arrived: resolve the version (pins, rollouts) →
/// `decode` (the protocol's binding, with the version's inputs and the
/// batch limit; on a worker thread when the request is bigger than
/// [`INLINE_BODY_BYTES`]) → score (on a worker thread for big batches) →
/// rollout guards and the shadow → per-version inference metrics.
pub(crate) async fn score_decoded<T, F, E>(
    state: &AppState,
    target: Target<'_>,
    size: usize,
    decode: F,
    explain_of: E,
) -> Result<Scored<T>, ApiError>
where
    T: Send + 'static,
    F: FnOnce(Decoder<'_>) -> Result<(T, Rows), ApiError> + Send + 'static,
    E: FnOnce(&T) -> ExplainQuery,
{
    let Target { name, pinned, explain, headers, deadline } = target;
    // A rollout routes unpinned requests by their request key (sticky);
    // the body is decoded with the inputs of the version that answers.
    let resolved = state.registry.resolve_request(name, pinned, headers).map_err(lookup_error)?;
    let version = resolved.version.clone();
    let max_batch = state.config.max_batch;
    let (request, rows) = if size <= INLINE_BODY_BYTES {
        decode(Decoder { fields: version.scorer.fields(), known: &resolved.known, max_batch })?
    } else {
        let (v, known) = (version.clone(), resolved.known.clone());
        off_thread(state, deadline, move || decode(Decoder { fields: v.scorer.fields(), known: &known, max_batch }))
            .await?
    };
    count_imputed(&version, &rows);
    let explain = explain_of(&request).or(explain);

    let started = Instant::now();
    let std_deadline = deadline.into_std();
    let (rows, scored) = if rows.len() <= INLINE_BATCH {
        let scored = score(&version, rows.view(), numbered(rows.len()), explain, std_deadline);
        (rows, scored)
    } else {
        score_on_pool(state, &version, rows, explain, deadline).await?
    };
    let elapsed = started.elapsed();
    // Guards and shadow see what the model did (not deadline cut-offs).
    if resolved.rollout.is_some() && !scored.as_ref().is_err_and(ApiError::is_deadline_exceeded) {
        let predictions: Option<Vec<Prediction>> =
            scored.as_ref().ok().map(|answered| answered.iter().map(|a| a.prediction).collect());
        // The request is done with its rows: a shadow takes them (no copy).
        resolved.observe(rows, predictions, elapsed);
    }
    let predictions = scored?;
    version.metrics.inference_duration_seconds.observe(elapsed.as_secs_f64());
    Ok(Scored { version, request, predictions })
}

/// Counts each missing value the version imputes, by feature
/// (`riskserve_imputed_features_total`): a scan of the rows, a counter
/// only when a value is missing.
fn count_imputed(version: &LoadedVersion, rows: &Rows) {
    for row in rows.iter() {
        for (i, v) in row.values().iter().enumerate() {
            if *v == Value::Missing {
                if let Some(counter) = version.metrics.imputed.get(i) {
                    counter.inc();
                }
            }
        }
    }
}

/// The index of the first row in error messages: `None` for a single
/// application, which has no index.
fn numbered(rows: usize) -> Option<usize> {
    (rows > 1).then_some(0)
}

/// Scores a batch too big to score inline on the request worker pool. A
/// batch of at least [`SPLIT_BATCH`] is split into one part per pool
/// thread (parts of at least half that), scored side by side: a 1,000-row
/// request takes about half the time on two cores while they are free, and
/// under load the parts queue like any other work. Returns the rows (for
/// rollout guards and the shadow) and the answers in order, or the first
/// part's error.
async fn score_on_pool(
    state: &AppState,
    version: &Arc<LoadedVersion>,
    rows: Rows,
    explain: ExplainQuery,
    deadline: tokio::time::Instant,
) -> Result<(Rows, Result<Vec<Answered>, ApiError>), ApiError> {
    let std_deadline = deadline.into_std();
    // Under SPLIT_BATCH rows this is one part.
    let parts = state.workers.threads().min(rows.len() / (SPLIT_BATCH / 2)).max(1);
    if parts == 1 {
        let v = version.clone();
        return off_thread(state, deadline, move || {
            let scored = score(&v, rows.view(), numbered(rows.len()), explain, std_deadline);
            Ok((rows, scored))
        })
        .await;
    }
    let rows = Arc::new(rows);
    let size = rows.len().div_ceil(parts);
    let jobs: Vec<_> = (0..parts)
        .map(|k| {
            let (rows, v) = (rows.clone(), version.clone());
            move || {
                let range = k * size..((k + 1) * size).min(rows.len());
                score(&v, rows.view().slice(range.clone()), Some(range.start), explain, std_deadline)
            }
        })
        .collect();
    let results = match tokio::time::timeout_at(deadline, state.workers.run_all(jobs)).await {
        Ok(Ok(results)) => results,
        Ok(Err(e)) => return Err(ApiError::internal(format!("prediction task failed: {e}"))),
        Err(_) => return Err(ApiError::deadline_exceeded()),
    };
    let mut answered = Vec::with_capacity(rows.len());
    let mut scored = Ok(());
    for part in results {
        match part {
            Ok(part) => answered.extend(part),
            Err(e) => {
                scored = Err(e);
                break;
            }
        }
    }
    let rows = Arc::try_unwrap(rows).unwrap_or_else(|shared| shared.as_ref().clone());
    Ok((rows, scored.map(|()| answered)))
}

/// The answering version's header; a constant, so inserting it does not
/// parse and check the name on every answer.
const X_MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");

/// Names the answering version in the `x-model-version` header.
pub(super) fn with_version_header(
    mut response: Response<Full<Bytes>>,
    version: &LoadedVersion,
) -> Response<Full<Bytes>> {
    response.headers_mut().insert(X_MODEL_VERSION, version.version_header.clone());
    response
}

/// Scores every application, or fails: a non-finite probability is an
/// error for the request (500, counted), never an answer; past the
/// deadline, 503. Without reason codes the applications are scored a block
/// at a time ([`crate::model::Scorer::predict_many`]); the deadline is
/// checked after each block of [`DEADLINE_CHECK_EVERY`].
/// `first`: the index in `instances` of `apps[0]`, for error messages
/// (`None` for a single application).
fn score(
    version: &LoadedVersion,
    rows: RowsView<'_>,
    first: Option<usize>,
    explain: ExplainQuery,
    deadline: Instant,
) -> Result<Vec<Answered>, ApiError> {
    let bands = version.scorer.meta().decision.bands.as_ref();
    let mut predictions = Vec::with_capacity(rows.len());
    let mut reasons = Vec::new();
    let mut shaps = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let chunk = rows.slice(start..(start + DEADLINE_CHECK_EVERY).min(rows.len()));
        match explain.reasons {
            None if explain.shap => {
                for row in chunk.iter() {
                    let shap = version.scorer.shap(row).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "explain=shap: model `{}` version {} has no trees with covers to compute SHAP values from \
                             (a logistic model, or a file without node counts); use explain=true",
                            version.name, version.version
                        ))
                    })?;
                    shaps.push(shap);
                }
                version.scorer.predict_many(chunk, &mut predictions);
            }
            None => version.scorer.predict_many(chunk, &mut predictions),
            Some(top) => {
                for row in chunk.iter() {
                    let (p, row_reasons) = version.scorer.predict_with_reasons(row, top);
                    predictions.push(p);
                    reasons.push(row_reasons);
                }
            }
        }
        start += chunk.len();
        if Instant::now() >= deadline {
            return Err(ApiError::deadline_exceeded());
        }
    }
    if let Some(i) = predictions.iter().position(|p| !p.probability_late.is_finite()) {
        version.metrics.inference_errors.inc();
        let which = first.map(|first| format!(" for instances[{}]", first + i)).unwrap_or_default();
        return Err(ApiError::inference(format!(
            "model `{}` version {} produced a non-finite probability ({}){which}; no prediction was made",
            version.name, version.version, predictions[i].probability_late
        )));
    }
    let high = predictions.iter().filter(|p| p.decision == Decision::HighRisk).count() as u64;
    version.metrics.predictions_high_risk.inc_by(high);
    version.metrics.predictions_low_risk.inc_by(predictions.len() as u64 - high);
    if let Some(drift) = &version.drift {
        drift.observe(rows, &predictions);
    }
    let (mut reasons, mut shaps) = (reasons.into_iter(), shaps.into_iter());
    Ok(predictions
        .into_iter()
        .map(|prediction| Answered {
            prediction,
            band: bands.map(|b| b.band(prediction.probability_late).to_string()),
            reasons: reasons.next().flatten(),
            shap: shaps.next(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(query: Option<&str>) -> Result<Option<usize>, String> {
        ExplainQuery::parse(query).map(|q| q.reasons).map_err(|e| {
            assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
            e.message
        })
    }

    #[test]
    fn the_query_gives_explain_and_reasons_and_names_a_bad_value() {
        let default = Ok(Some(DEFAULT_REASONS));
        for (query, want) in [
            (None, default.clone()),
            (Some(""), default.clone()),
            (Some("explain=false"), Ok(None)),
            (Some("explain=0"), Ok(None)),
            (Some("explain"), default.clone()),
            (Some("explain="), default.clone()),
            (Some("explain=1&reasons=2"), Ok(Some(2))),
            (Some("reasons=0"), Ok(Some(0))),
            (Some("reasons=2&explain=false"), Ok(None)),
            (Some("&&a=b&=c&explain=false&"), Ok(None)),
            (Some("é=ü&reasons=10"), Ok(Some(10))),
        ] {
            assert_eq!(reasons(query), want, "{query:?}");
        }
        for (query, named) in [
            ("explain=maybe", "`explain` must be true, false or shap, got `maybe`"),
            ("explain=false=1", "got `false=1`"),
            ("reasons=11", "`reasons` must be a whole number from 0 to 10, got `11`"),
            ("reasons=-1", "got `-1`"),
            ("reasons=", "got ``"),
        ] {
            let err = reasons(Some(query)).unwrap_err();
            assert!(err.contains(named), "{query}: {err}");
        }
    }
}
