//! One decision tree as stored in a model file: parallel arrays, the shape
//! every tree model is brought into (riskserve's own trainer writes it; the
//! compiled forest and the straightforward reference walk both read it).

use super::limits::{bounded_seq, MAX_NODES_PER_TREE};
use serde::{Deserialize, Deserializer, Serialize};

/// One decision tree as parallel arrays. Node 0 is the root. For an internal
/// node, `feature[i]` is an encoded column and rows with
/// `x[feature] <= threshold` go to `left`, others to `right`. A leaf has
/// `feature[i] == -1` and `value[i]` = P(late) among training rows reaching it.
///
/// Each array is refused while decoding once it exceeds
/// [`MAX_NODES_PER_TREE`] entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    #[serde(deserialize_with = "tree_nodes")]
    pub feature: Vec<i32>,
    #[serde(deserialize_with = "tree_nodes")]
    pub threshold: Vec<f64>,
    #[serde(deserialize_with = "tree_nodes")]
    pub left: Vec<u32>,
    #[serde(deserialize_with = "tree_nodes")]
    pub right: Vec<u32>,
    #[serde(deserialize_with = "tree_nodes")]
    pub value: Vec<f64>,
    /// Training rows that reached each node (scikit-learn's
    /// `n_node_samples`), used to weight node means when explaining. Optional:
    /// files written before format v2 lack it, and children are then
    /// weighted equally.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "tree_nodes")]
    pub samples: Vec<u32>,
}

impl Tree {
    /// The nodes row `x` visits, from the root to its leaf: the
    /// straightforward walk (`x[feature] <= threshold` goes left, a leaf has
    /// feature -1), which the compiled forest is held to and training counts
    /// its leaves with.
    pub fn path<'a>(&'a self, x: &'a [f64]) -> impl Iterator<Item = usize> + 'a {
        std::iter::successors(Some(0usize), move |&i| {
            let f = self.feature[i];
            (f != -1).then(|| if x[f as usize] <= self.threshold[i] { self.left[i] } else { self.right[i] } as usize)
        })
    }
}

fn tree_nodes<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    bounded_seq(d, MAX_NODES_PER_TREE, "nodes in one tree", "max_nodes_per_tree")
}
