//! Prediction response bodies: `{"model_name", "model_version",
//! "predictions": [{"probability_late", "decision", "band"?, "reasons"?}, ...]}`,
//! written into a buffer sized once from the number of predictions, so
//! answering does not grow (and copy) the buffer as it writes (reason
//! codes, when asked for, may still grow it).

use super::error::ApiError;
use serde::Serialize;

/// The body of a prediction answer; `P` is one answered prediction.
#[derive(Serialize)]
pub struct PredictResponse<'a, P> {
    pub model_name: &'a str,
    pub model_version: u64,
    pub predictions: &'a [P],
}

/// Bytes of one serialised prediction at most:
/// `{"probability_late":` (20) + a float (≤ 24) + `,"decision":"high_risk"}` (24) + `,`.
const PER_PREDICTION: usize = 72;
/// The envelope around the predictions, without the model name.
const ENVELOPE: usize = 64;

impl<P: Serialize> PredictResponse<'_, P> {
    /// The JSON body, written into one buffer sized for it up front.
    pub fn to_json(&self) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(ENVELOPE + self.model_name.len() + PER_PREDICTION * self.predictions.len());
        serde_json::to_writer(&mut out, self).map_err(|e| ApiError::internal(format!("serialising response: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Decision, Prediction};

    #[test]
    fn the_body_is_the_documented_shape_and_fits_the_buffer_sized_up_front() {
        let worst = Prediction { probability_late: 0.12345678901234568, decision: Decision::HighRisk };
        let predictions = vec![worst; 100];
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
            r#"{"model_name":"m","model_version":3,"predictions":[{"probability_late":0.12345678901234568,"decision":"high_risk"}]}"#
        );
    }
}
