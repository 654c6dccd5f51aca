//! Probability calibration, the last step of the pipeline: a monotone map
//! from the estimator's raw probability to a calibrated one, fitted by
//! `train` on out-of-fold predictions (see `crate::train::calibrate`) and
//! stored in the model file as `"calibration"`.
//!
//! - `isotonic`: a non-decreasing step function given by breakpoints
//!   `x` (raw) → `y` (calibrated), interpolated linearly between breakpoints
//!   and clamped outside them (scikit-learn's `IsotonicRegression`).
//! - `platt`: `sigmoid(a · logit(raw) + b)`, Platt scaling on the log-odds.
//!
//! Applying either is allocation-free: a binary search or two `exp`s.

use super::estimator::sigmoid;
use super::limits::bounded_seq;
use serde::{Deserialize, Deserializer, Serialize};

/// Most breakpoints an isotonic map may have (refused while decoding beyond).
pub const MAX_BREAKPOINTS: usize = 100_000;

/// Raw probabilities are kept this far from 0 and 1 before taking log-odds.
const EPS: f64 = 1e-12;

fn breakpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    bounded_seq(d, MAX_BREAKPOINTS, "calibration breakpoints", "max_calibration_breakpoints")
}

/// A fitted calibration map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Calibration {
    Isotonic {
        #[serde(deserialize_with = "breakpoints")]
        x: Vec<f64>,
        #[serde(deserialize_with = "breakpoints")]
        y: Vec<f64>,
    },
    Platt {
        a: f64,
        b: f64,
    },
}

/// Why a calibration map cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error("isotonic calibration needs as many x as y breakpoints, and at least one (found {x} and {y})")]
    Lengths { x: usize, y: usize },
    #[error("isotonic calibration breakpoints must be finite, x increasing and y non-decreasing probabilities")]
    NotMonotone,
    #[error("platt calibration needs finite parameters and a >= 0 (found a = {a}, b = {b})")]
    BadPlatt { a: f64, b: f64 },
}

impl Calibration {
    /// `isotonic` or `platt`.
    pub fn method(&self) -> &'static str {
        match self {
            Calibration::Isotonic { .. } => "isotonic",
            Calibration::Platt { .. } => "platt",
        }
    }

    /// Checks the map is monotone and maps probabilities to probabilities.
    pub fn validate(&self) -> Result<(), CalibrationError> {
        match self {
            Calibration::Isotonic { x, y } => {
                if x.len() != y.len() || x.is_empty() {
                    return Err(CalibrationError::Lengths { x: x.len(), y: y.len() });
                }
                let finite = x.iter().all(|v| v.is_finite()) && y.iter().all(|v| (0.0..=1.0).contains(v));
                let increasing = x.windows(2).all(|w| w[0] < w[1]) && y.windows(2).all(|w| w[0] <= w[1]);
                if finite && increasing {
                    Ok(())
                } else {
                    Err(CalibrationError::NotMonotone)
                }
            }
            Calibration::Platt { a, b } => {
                if a.is_finite() && b.is_finite() && *a >= 0.0 {
                    Ok(())
                } else {
                    Err(CalibrationError::BadPlatt { a: *a, b: *b })
                }
            }
        }
    }

    /// The calibrated probability for a raw one. Monotone non-decreasing.
    #[inline]
    pub fn apply(&self, raw: f64) -> f64 {
        match self {
            Calibration::Isotonic { x, y } => {
                let at = x.partition_point(|&v| v <= raw);
                if at == 0 {
                    return y[0];
                }
                if at == x.len() {
                    return y[at - 1];
                }
                let (x0, x1, y0, y1) = (x[at - 1], x[at], y[at - 1], y[at]);
                y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
            }
            Calibration::Platt { a, b } => sigmoid(a * logit(raw) + b),
        }
    }
}

/// Log-odds of a probability kept inside (0, 1).
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_interpolates_between_breakpoints_and_clamps_outside() {
        let c = Calibration::Isotonic { x: vec![0.1, 0.2, 0.4], y: vec![0.0, 0.1, 0.5] };
        c.validate().unwrap();
        assert_eq!(c.apply(0.0), 0.0);
        assert_eq!(c.apply(0.1), 0.0);
        assert!((c.apply(0.15) - 0.05).abs() < 1e-15);
        assert!((c.apply(0.3) - 0.3).abs() < 1e-15);
        assert_eq!(c.apply(0.4), 0.5);
        assert_eq!(c.apply(0.9), 0.5);
    }

    #[test]
    fn platt_is_a_sigmoid_of_the_log_odds() {
        let identity = Calibration::Platt { a: 1.0, b: 0.0 };
        for p in [0.001, 0.2, 0.5, 0.97] {
            assert!((identity.apply(p) - p).abs() < 1e-12);
        }
        let shifted = Calibration::Platt { a: 1.0, b: (0.5f64).ln() };
        assert!(shifted.apply(0.5) < 0.5);
    }

    #[test]
    fn non_monotone_or_malformed_maps_are_refused() {
        let bad = [
            Calibration::Isotonic { x: vec![0.1, 0.1], y: vec![0.0, 0.1] },
            Calibration::Isotonic { x: vec![0.1, 0.2], y: vec![0.2, 0.1] },
            Calibration::Isotonic { x: vec![0.1], y: vec![1.5] },
            Calibration::Isotonic { x: vec![], y: vec![] },
            Calibration::Isotonic { x: vec![0.1, f64::NAN], y: vec![0.1, 0.2] },
            Calibration::Platt { a: -1.0, b: 0.0 },
            Calibration::Platt { a: 1.0, b: f64::INFINITY },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn the_on_disk_shape_is_tagged_by_method() {
        let c = Calibration::Platt { a: 1.5, b: -0.25 };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"method":"platt","a":1.5,"b":-0.25}"#);
        assert_eq!(serde_json::from_str::<Calibration>(&text).unwrap(), c);
        let iso: Calibration = serde_json::from_str(r#"{"method":"isotonic","x":[0.1],"y":[0.2]}"#).unwrap();
        assert_eq!(iso.method(), "isotonic");
    }
}
