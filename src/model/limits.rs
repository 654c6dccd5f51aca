//! What a model file may cost before it can serve: the structural limits
//! (trees, nodes per tree, tree depth, categories, free-form metadata), the
//! per-prediction cost budget ([`ModelLimits`]), and the bounded decoding that
//! keeps the memory of a load within a fixed multiple of the file's size.
//!
//! The limits and their reasons are listed in `docs/model-format.md`
//! ("Limits"). In short, loading a file of `B` bytes needs at most about
//! [`LOAD_MEMORY_MULTIPLE`] × `B` bytes of memory plus a few MB, and one
//! prediction visits at most `max_prediction_cost` tree nodes.

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// Most trees a forest may have. `riskserve train` writes 100 by default and
/// the bundled model has 100; beyond this a forest adds per-tree overhead
/// without adding accuracy. Enforced while decoding, before the trees are
/// held in memory.
pub const MAX_TREES: usize = 10_000;

/// Most nodes one tree may have. A tree grown with `min_samples_leaf` = 20
/// on 10 M rows has at most 1 M nodes; `riskserve train` grows each tree on
/// 20 k rows (≤ 2 k nodes) and the bundled model's largest tree has 379.
pub const MAX_NODES_PER_TREE: usize = 1_000_000;

/// Deepest a tree may be (edges from the root to its deepest leaf). The
/// bundled model's deepest tree has depth 24 (grown without a depth limit);
/// trees grown on a few million rows stay below 64 in practice, and a
/// balanced tree of depth 128 would need 2^128 leaves, so anything deeper is
/// a degenerate chain that only costs time.
pub const MAX_TREE_DEPTH: usize = 128;

/// Most categories one categorical feature may list. The bundled model's
/// largest has 12; the encoded width (all features together) is separately
/// capped at [`super::preprocess::MAX_ENCODED_WIDTH`].
pub const MAX_CATEGORIES_PER_FEATURE: usize = 256;

/// Most numeric or categorical features a schema may list while decoding
/// (the schema must list exactly the server's features; this only stops a
/// hostile list from being held in memory before that check).
pub const MAX_SCHEMA_FEATURES: usize = 64;

/// Largest `hyperparameters` object, in bytes of JSON. It is free-form, so a
/// bounded size is what keeps its decoded form bounded.
pub const MAX_HYPERPARAMETERS_BYTES: usize = 64 * 1024;

/// Worst-case tree nodes visited per prediction by the bundled model
/// (`models/credit-risk/1/model.json`: 100 trees, sum of (depth + 1) = 1,727).
pub const BUNDLED_PREDICTION_COST: u64 = 1_727;

/// Default per-prediction budget: 50 × the bundled model's cost.
pub const DEFAULT_MAX_PREDICTION_COST: u64 = 50 * BUNDLED_PREDICTION_COST;

/// Loading a model file of `B` bytes needs at most about this many × `B`
/// bytes of memory, plus a fixed few MB (see `docs/model-format.md`).
pub const LOAD_MEMORY_MULTIPLE: u64 = 10;

/// The configurable part of what a model may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    /// Largest worst-case number of tree nodes one prediction may visit
    /// (a logistic model costs one multiply-add per coefficient).
    pub max_prediction_cost: u64,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits { max_prediction_cost: DEFAULT_MAX_PREDICTION_COST }
    }
}

/// Deserialises a JSON array into a `Vec`, failing as soon as it holds more
/// than `limit` elements, so an over-long list is never held in memory.
/// `what` names the elements and `limit_name` the limit in the error.
pub(crate) fn bounded_seq<'de, D, T>(
    deserializer: D,
    limit: usize,
    what: &'static str,
    limit_name: &'static str,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T> {
        limit: usize,
        what: &'static str,
        limit_name: &'static str,
        element: PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {} {}", self.limit, self.what)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(element) = seq.next_element()? {
                super::pacing::checkpoint();
                if out.len() == self.limit {
                    return Err(serde::de::Error::custom(format_args!(
                        "more than {} {} (limit {})",
                        self.limit, self.what, self.limit_name
                    )));
                }
                out.push(element);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Bounded { limit, what, limit_name, element: PhantomData })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Three(#[serde(deserialize_with = "three")] Vec<u8>);

    fn three<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        bounded_seq(d, 3, "bytes", "max_bytes")
    }

    #[test]
    fn a_bounded_list_stops_at_its_limit_and_names_it() {
        assert_eq!(serde_json::from_str::<Three>("[1,2,3]").unwrap().0, vec![1, 2, 3]);
        let err = serde_json::from_str::<Three>("[1,2,3,4]").unwrap_err().to_string();
        assert!(err.contains("more than 3 bytes (limit max_bytes)"), "{err}");
        assert!(serde_json::from_str::<Three>("7").is_err());
    }

    #[test]
    fn the_default_budget_is_fifty_times_the_bundled_model() {
        assert_eq!(ModelLimits::default().max_prediction_cost, 86_350);
    }
}
