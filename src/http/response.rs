//! Prediction response bodies: `{"model_name", "model_version",
//! "predictions": [{"probability_late", "decision", "band"?, "reasons"?}, ...]}`,
//! written into a buffer sized once from the number of predictions, so
//! answering does not grow (and copy) the buffer as it writes (reason
//! codes, when asked for, may still grow it).

use super::error::ApiError;
use super::predict::Answered;
use crate::registry::LoadedVersion;

/// The body of a prediction answer, written by hand: the keys are
/// constants and the version's name and number were rendered as JSON when
/// it loaded ([`LoadedVersion::new`]), so answering escapes nothing but
/// band and reason texts. Through serde's derive this cost ~1,900
/// instructions a request (keys re-escaped every time, the flattened
/// prediction serialised through a map); the tests hold the bytes to that
/// derive's.
pub struct PredictResponse<'a> {
    /// The model name as a JSON string.
    pub name_json: &'a str,
    /// The version as a JSON number.
    pub version_label: &'a str,
    /// The version's inputs, which name the reasons' features.
    pub fields: &'a crate::model::fields::Fields,
    pub predictions: &'a [Answered],
}

/// Bytes of one serialised prediction at most:
/// `{"probability_late":` (20) + a float (≤ 24) + `,"decision":"high_risk"}` (24) + `,`.
const PER_PREDICTION: usize = 72;
const NAME_KEY: &[u8] = br#"{"model_name":"#;
const VERSION_KEY: &[u8] = br#","model_version":"#;
const PREDICTIONS_KEY: &[u8] = br#","predictions":["#;
const END: &[u8] = b"]}";

impl<'a> PredictResponse<'a> {
    /// The answer of `version` with `predictions`.
    pub fn of(version: &'a LoadedVersion, predictions: &'a [Answered]) -> PredictResponse<'a> {
        PredictResponse {
            name_json: &version.name_json,
            version_label: &version.version_label,
            fields: version.scorer.fields(),
            predictions,
        }
    }

    /// The bytes the body takes at most without bands or reasons.
    fn capacity(&self) -> usize {
        let envelope = NAME_KEY.len() + self.name_json.len() + VERSION_KEY.len() + self.version_label.len();
        envelope + PREDICTIONS_KEY.len() + PER_PREDICTION * self.predictions.len() + END.len()
    }

    /// The JSON body, written into one buffer sized for it up front.
    pub fn to_json(&self) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(self.capacity());
        out.extend_from_slice(NAME_KEY);
        out.extend_from_slice(self.name_json.as_bytes());
        out.extend_from_slice(VERSION_KEY);
        out.extend_from_slice(self.version_label.as_bytes());
        out.extend_from_slice(PREDICTIONS_KEY);
        for (i, answered) in self.predictions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            answered
                .write_json(self.fields, &mut out)
                .map_err(|e| ApiError::internal(format!("serialising response: {e}")))?;
        }
        out.extend_from_slice(END);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::model::explain::{Reason, ReasonValue, ShownReasons};
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use crate::model::{Decision, Model, Prediction};
    use serde_json::{json, Value};
    use std::sync::Arc;

    /// What the body is defined to be, built as a JSON value.
    fn defined(version: &LoadedVersion, predictions: &[Answered]) -> Value {
        let fields = version.scorer.fields();
        let predictions: Vec<Value> = predictions
            .iter()
            .map(|a| {
                let mut p =
                    json!({"probability_late": a.prediction.probability_late, "decision": a.prediction.decision});
                if let Some(band) = &a.band {
                    p["band"] = json!(band);
                }
                if let Some(reasons) = &a.reasons {
                    p["reasons"] = serde_json::to_value(ShownReasons { reasons, fields }).unwrap();
                }
                p
            })
            .collect();
        json!({"model_name": version.name, "model_version": version.version, "predictions": predictions})
    }

    fn answered(probability_late: f64, band: Option<&str>, reasons: Option<Vec<Reason>>) -> Answered {
        let decision = if probability_late >= 0.5 { Decision::HighRisk } else { Decision::LowRisk };
        Answered {
            prediction: Prediction { probability_late, decision },
            band: band.map(str::to_string),
            reasons,
            shap: None,
        }
    }

    /// A loaded version named `name`, as the loader builds one.
    fn loaded(name: &str, version: u64) -> LoadedVersion {
        let scorer = Arc::new(Model::from_bytes(&encode(&tiny_payload()).unwrap()).unwrap());
        LoadedVersion::new(name, version, "here".into(), scorer, 0.0, Metrics::new().version(name, version, []))
    }

    /// The body for `version` and `predictions`, and the defined one.
    fn both(version: &LoadedVersion, predictions: &[Answered]) -> (String, Value) {
        let body = PredictResponse::of(version, predictions).to_json().unwrap();
        (String::from_utf8(body).unwrap(), defined(version, predictions))
    }

    #[test]
    fn the_body_is_the_documented_shape_and_fits_the_buffer_sized_up_front() {
        let predictions: Vec<Answered> = (0..100).map(|_| answered(0.12345678901234568, None, None)).collect();
        let version = loaded("credit-risk", u64::MAX);
        let (body, defined) = both(&version, &predictions);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), defined);
        let sized = PredictResponse::of(&version, &predictions).capacity();
        assert!(body.len() <= sized, "{} > {sized}", body.len());
        assert_eq!(
            both(&loaded("m", 3), &predictions[..1]).0,
            r#"{"model_name":"m","model_version":3,"predictions":[{"probability_late":0.12345678901234568,"decision":"low_risk"}]}"#
        );
    }

    #[test]
    fn the_hand_written_bytes_are_the_defined_ones_with_bands_reasons_and_odd_names() {
        let reason = |feature, value, contribution| Reason { feature, value, contribution };
        let predictions = [
            answered(0.0, None, None),
            answered(1.0, Some("D"), None),
            answered(5e-324, Some("band \"ü\"\n"), Some(vec![])),
            answered(
                0.75,
                None,
                Some(vec![
                    reason(7, ReasonValue::Text("G\u{1}".into()), 0.25),
                    reason(7, ReasonValue::Category(1), 0.25),
                    reason(4, ReasonValue::Number(14.39), 1e-17),
                    reason(8, ReasonValue::Missing, 1e-300),
                ]),
            ),
        ];
        for name in ["credit-risk", "", "m\"o\\d\u{7f}é\t"] {
            let version = loaded(name, 7);
            for n in [0, 1, predictions.len()] {
                let (body, defined) = both(&version, &predictions[..n]);
                assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), defined, "{body}");
            }
        }
        // Byte for byte, the reasons are what the definition writes.
        let version = loaded("m", 1);
        let Some(reasons) = &predictions[3].reasons else { unreachable!() };
        let shown = serde_json::to_string(&ShownReasons { reasons, fields: version.scorer.fields() }).unwrap();
        assert!(both(&version, &predictions[3..]).0.contains(&format!(r#""reasons":{shown}}}"#)), "{shown}");
        let (body, _) = both(&loaded("m", 1), &predictions[3..]);
        assert!(body.contains(r#"{"feature":"grade","value":"B","contribution":0.25,"imputed":false}"#), "{body}");
        assert!(
            body.contains(r#"{"feature":"emp_length","value":null,"contribution":1e-300,"imputed":true}"#),
            "{body}"
        );
    }
}
