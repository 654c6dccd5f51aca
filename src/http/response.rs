//! Prediction response bodies: `{"model_name", "model_version",
//! "predictions": [{"probability_late", "decision", "band"?, "reasons"?}, ...]}`,
//! written into a buffer sized once from the number of predictions, so
//! answering does not grow (and copy) the buffer as it writes (reason
//! codes, when asked for, may still grow it).

use super::error::ApiError;
use super::predict::Answered;
use serde::Serialize;

/// The body of a prediction answer. Its derived `Serialize` defines the
/// bytes; [`PredictResponse::to_json`] writes the same bytes by hand
/// (the tests hold it to that), because serde's path spent ~1,900
/// instructions a request on keys it re-escaped every time and on the
/// flattened prediction's map.
#[derive(Serialize)]
pub struct PredictResponse<'a> {
    pub model_name: &'a str,
    pub model_version: u64,
    pub predictions: &'a [Answered],
}

/// Bytes of one serialised prediction at most:
/// `{"probability_late":` (20) + a float (≤ 24) + `,"decision":"high_risk"}` (24) + `,`.
const PER_PREDICTION: usize = 72;
/// The envelope around the predictions, without the model name.
const ENVELOPE: usize = 64;

impl PredictResponse<'_> {
    /// The JSON body, written into one buffer sized for it up front.
    pub fn to_json(&self) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(ENVELOPE + self.model_name.len() + PER_PREDICTION * self.predictions.len());
        self.write(&mut out).map_err(|e| ApiError::internal(format!("serialising response: {e}")))?;
        Ok(out)
    }

    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(br#"{"model_name":"#);
        serde_json::to_writer(&mut *out, self.model_name)?;
        out.extend_from_slice(br#","model_version":"#);
        serde_json::to_writer(&mut *out, &self.model_version)?;
        out.extend_from_slice(br#","predictions":["#);
        for (i, answered) in self.predictions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            answered.write_json(out)?;
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::explain::{RawValue, Reason};
    use crate::model::{Decision, Prediction};

    fn answered(probability_late: f64, band: Option<&str>, reasons: Option<Vec<Reason>>) -> Answered {
        let decision = if probability_late >= 0.5 { Decision::HighRisk } else { Decision::LowRisk };
        Answered { prediction: Prediction { probability_late, decision }, band: band.map(str::to_string), reasons }
    }

    #[test]
    fn the_body_is_the_documented_shape_and_fits_the_buffer_sized_up_front() {
        let predictions: Vec<Answered> = (0..100).map(|_| answered(0.12345678901234568, None, None)).collect();
        let response =
            PredictResponse { model_name: "credit-risk", model_version: u64::MAX, predictions: &predictions };
        let body = response.to_json().unwrap();
        let expected = serde_json::to_vec(&response).unwrap();
        assert_eq!(body, expected);
        let sized = ENVELOPE + "credit-risk".len() + PER_PREDICTION * predictions.len();
        assert!(body.len() <= sized, "{} > {sized}", body.len());
        let one = PredictResponse { model_name: "m", model_version: 3, predictions: &predictions[..1] };
        assert_eq!(
            String::from_utf8(one.to_json().unwrap()).unwrap(),
            r#"{"model_name":"m","model_version":3,"predictions":[{"probability_late":0.12345678901234568,"decision":"low_risk"}]}"#
        );
    }

    #[test]
    fn the_hand_written_bytes_are_the_derived_ones_with_bands_reasons_and_odd_names() {
        let reason = |feature, value, contribution, imputed| Reason { feature, value, contribution, imputed };
        let predictions = [
            answered(0.0, None, None),
            answered(1.0, Some("D"), None),
            answered(5e-324, Some("band \"ü\"\n"), Some(vec![])),
            answered(
                0.75,
                None,
                Some(vec![
                    reason("grade", RawValue::Text("G\u{1}".into()), 0.25, false),
                    reason("dti", RawValue::Number(14.39), -1e-17, false),
                    reason("emp_length", RawValue::Missing, 0.0, true),
                ]),
            ),
        ];
        for name in ["credit-risk", "", "m\"o\\d\u{7f}é\t"] {
            for n in [0, 1, predictions.len()] {
                let response = PredictResponse { model_name: name, model_version: 7, predictions: &predictions[..n] };
                let (body, expected) = (response.to_json().unwrap(), serde_json::to_vec(&response).unwrap());
                assert_eq!(String::from_utf8(body).unwrap(), String::from_utf8(expected).unwrap());
            }
        }
    }
}
