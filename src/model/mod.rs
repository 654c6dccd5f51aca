//! The prediction core shared by training and serving: each version's
//! declared inputs ([`schema`], compiled into [`fields::Fields`]) and the
//! rows decoded through them ([`row`]), the per-value rules, the one-hot
//! [`encoder`], fitted estimators, the on-disk format, and [`Model`], a
//! loaded, validated and compiled model version that scores rows without
//! allocating.

pub mod calibration;
pub mod compiled;
pub mod encoder;
pub mod estimator;
pub mod explain;
pub mod field_rules;
pub mod fields;
pub mod forest;
pub mod format;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod import;
pub mod input;
pub mod limits;
pub mod pacing;
pub mod preprocess;
pub mod reference;
pub mod row;
pub mod schema;
pub mod scorer;
pub mod shap;
#[cfg(test)]
pub(crate) mod test_support;
pub mod tree;

pub use compiled::Model;
pub use scorer::{Decision, Prediction, Scorer};
