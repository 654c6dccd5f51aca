//! Library trees lowered to riskserve's: a split of XGBoost or LightGBM
//! (strict or inclusive comparison, `float` or `double`, missing values
//! sent either way, category sets) becomes a node `x[column] <= threshold`
//! over a [`Derived`] column, which sends NaN right as every compiled node
//! does.
//!
//! - A number split `v <= le` that sends a missing value right reads the
//!   value itself; one that sends it left reads `-v` and keeps the sides
//!   swapped: `-v <= next_down(-le)` is `v > le`, and NaN fails it.
//! - XGBoost compares `(float)x < t`: the largest `f64` that rounds to a
//!   `float` below `t` is found once ([`f32_below`]), so the walk compares
//!   the request's `f64` as it is and answers as XGBoost does.
//! - A set split reads a column that is already 0.0 (left) or 1.0 (right)
//!   for the row, whatever the library's rule for members, missing values
//!   and unknown categories; identical splits share one column.
//!
//! The result is an ordinary [`Tree`] (nodes in breadth-first order, so
//! children lie after their parent) that [`super::super::forest`] checks and
//! compiles like any other.

use super::super::encoder::{Derived, FloatStep, MissingRule};
use super::super::tree::Tree;
use std::collections::HashMap;

/// Which way a value goes at a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    fn bit(self) -> u64 {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }
}

/// One split, as the library decides it.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Left when `v <= le`, `v` the feature's value after `rule`; a value
    /// that is NaN after `rule` goes `missing`.
    Number { feature: usize, rule: MissingRule, le: f64, missing: Side },
    /// Left when `v <= le`, `v` the feature's value computed in `float` by
    /// `steps` ([`Derived::Float`], an ONNX pipeline); NaN goes `missing`.
    Float { feature: usize, steps: Box<[FloatStep]>, le: f64, missing: Side },
    /// Codes in `set` go `inside`, other codes the other way; a missing
    /// value goes `missing`, a category the model does not know `unseen`.
    Member { feature: usize, set: Vec<u32>, inside: Side, missing: Side, unseen: Side },
}

/// A node of a library tree: a split with its two children (indices into
/// the same tree), or a leaf's value. `cover` is the training weight that
/// reached it (hessian sum or row count), for explanations.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Split { test: Test, left: usize, right: usize, cover: f64 },
    Leaf { value: f64, cover: f64 },
}

/// XGBoost's `(float)x < t` as `x <= T` for an `f64` `x`: the largest `T`
/// whose values all round (to nearest, ties to even) to a `float` below `t`.
pub fn f32_below(t: f32) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let below = t.next_down();
    if below == f32::NEG_INFINITY {
        // Only values that round to −∞ are below −f32::MAX.
        let m = f64::from(f32::MIN) - f64::from(f32::MAX - f32::MAX.next_down()) / 2.0;
        return m.next_down();
    }
    // The midpoint is exact in f64; it rounds to whichever of the two has
    // an even significand.
    let m = (f64::from(below) + f64::from(t)) / 2.0;
    if below.to_bits() & 1 == 0 {
        m
    } else {
        m.next_down()
    }
}

/// Lowers trees, collecting the columns their splits read.
#[derive(Debug, Default)]
pub struct Lowering {
    columns: Vec<Derived>,
    index: HashMap<Derived, usize>,
}

impl Lowering {
    pub fn new() -> Lowering {
        Lowering::default()
    }

    /// The columns `trees` (lowered by this) read, in their final order:
    /// numbers first, then each feature's set splits side by side (so the
    /// encoder copies them from one precomputed row, see
    /// [`crate::model::encoder::Encoder::derived`]); the trees' columns are
    /// renumbered to match.
    pub fn finish(self, trees: &mut [Tree]) -> Vec<Derived> {
        let mut order: Vec<usize> = (0..self.columns.len()).collect();
        // Stable: numbers in first-seen order, then sets grouped by feature.
        order.sort_by_key(|&k| match &self.columns[k] {
            Derived::Number { .. } | Derived::Float { .. } => (0, 0),
            Derived::Member { feature, .. } => (1, *feature),
        });
        let mut new_of = vec![0i32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_of[old] = new as i32;
        }
        for tree in trees.iter_mut() {
            for f in tree.feature.iter_mut().filter(|f| **f >= 0) {
                *f = new_of[*f as usize];
            }
        }
        let mut columns: Vec<Option<Derived>> = self.columns.into_iter().map(Some).collect();
        order.iter().map(|&old| columns[old].take().expect("each column once")).collect()
    }

    fn column(&mut self, d: Derived) -> i32 {
        let next = self.columns.len();
        let k = *self.index.entry(d.clone()).or_insert(next);
        if k == next {
            self.columns.push(d);
        }
        k as i32
    }

    /// One library tree (root at 0) as a riskserve [`Tree`], and the
    /// library's cover of each of its nodes; each leaf's value multiplied
    /// by `scale`. Refuses a node reached twice or a child index outside
    /// the tree.
    pub fn tree(&mut self, nodes: &[Node], scale: f64) -> Result<(Tree, Vec<f64>), String> {
        let n = nodes.len();
        if n == 0 {
            return Err("has no nodes".into());
        }
        let mut tree = Tree {
            feature: Vec::with_capacity(n),
            threshold: Vec::with_capacity(n),
            left: Vec::with_capacity(n),
            right: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            samples: Vec::with_capacity(n),
        };
        let max_cover = nodes.iter().map(cover).fold(0.0f64, f64::max);
        // Covers become counts at a common scale (only their ratios matter).
        let to_count = |c: f64| if max_cover > 0.0 { (c.max(0.0) / max_cover * 1e9).round() as u32 } else { 1 };
        let mut covers = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        seen[0] = true;
        let mut queue = std::collections::VecDeque::from([0usize]);
        let mut next_id = 1u32;
        while let Some(i) = queue.pop_front() {
            covers.push(cover(&nodes[i]));
            match &nodes[i] {
                Node::Leaf { value, cover } => {
                    tree.feature.push(-1);
                    tree.threshold.push(0.0);
                    tree.left.push(0);
                    tree.right.push(0);
                    tree.value.push(value * scale);
                    tree.samples.push(to_count(*cover));
                }
                Node::Split { test, left, right, cover } => {
                    for &c in [left, right] {
                        match seen.get_mut(c) {
                            None => return Err(format!("node {i} has child {c}, outside the tree's {n} nodes")),
                            Some(true) => return Err(format!("node {c} has two parents; each node of a tree has one")),
                            Some(s) => *s = true,
                        }
                    }
                    let (column, threshold, swap) = self.split(test);
                    let (first, second) = if swap { (*right, *left) } else { (*left, *right) };
                    queue.push_back(first);
                    queue.push_back(second);
                    tree.feature.push(column);
                    tree.threshold.push(threshold);
                    tree.left.push(next_id);
                    tree.right.push(next_id + 1);
                    next_id += 2;
                    tree.value.push(0.0);
                    tree.samples.push(to_count(*cover));
                }
            }
        }
        Ok((tree, covers))
    }

    /// The column, threshold, and whether the library's children swap
    /// places (the compiled node's first child is then its right one).
    fn split(&mut self, test: &Test) -> (i32, f64, bool) {
        match test {
            Test::Number { feature, rule, le, missing } => {
                // A rule that leaves no NaN needs no direction for it.
                let nan_left = *missing == Side::Left && *rule != MissingRule::NanAsZero;
                let column = self.column(Derived::Number { feature: *feature, rule: *rule, negate: nan_left });
                number_split(column, *le, nan_left)
            }
            Test::Float { feature, steps, le, missing } => {
                let nan_left = *missing == Side::Left;
                let column = self.column(Derived::Float { feature: *feature, steps: steps.clone(), negate: nan_left });
                number_split(column, *le, nan_left)
            }
            Test::Member { feature, set, inside, missing, unseen } => {
                let column = self.column(Derived::Member {
                    feature: *feature,
                    set: member_bits(set),
                    inside: inside.bit(),
                    missing: missing.bit(),
                    unseen: unseen.bit(),
                });
                (column, 0.5, false)
            }
        }
    }
}

/// The bitset of [`Derived::Member`] for category codes `set`.
pub fn member_bits(set: &[u32]) -> Box<[u64]> {
    let words = set.iter().map(|&c| c as usize / 64 + 1).max().unwrap_or(0);
    let mut bits = vec![0u64; words];
    for &c in set {
        bits[c as usize / 64] |= 1 << (c % 64);
    }
    bits.into_boxed_slice()
}

/// A number split over `column` (negated when NaN goes left: see the
/// module doc): its column, threshold and whether the children swap.
fn number_split(column: i32, le: f64, nan_left: bool) -> (i32, f64, bool) {
    if nan_left {
        (column, (-le).next_down(), true)
    } else {
        (column, le, false)
    }
}

fn cover(node: &Node) -> f64 {
    match node {
        Node::Split { cover, .. } | Node::Leaf { cover, .. } => *cover,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::encoder::Encoder;
    use crate::model::row::Value;

    #[test]
    fn f32_below_is_the_f64_edge_of_floats_below_the_threshold() {
        for t in [0.2039f32, 1e-45, -1e-45, 0.0, -0.0, 1.0, -3.5, 35000.0, 0.1155, f32::MAX, f32::MIN_POSITIVE] {
            let edge = f32_below(t);
            assert!((edge as f32) < t, "{t}: the edge itself is below");
            assert!((edge.next_up() as f32) >= t, "{t}: the next f64 is not");
        }
        // Each side of a tie between two floats goes to the even one.
        for t in [1.0f32, 1.0000001, 16777216.0, 3.0e-39] {
            let edge = f32_below(t);
            let p = t.next_down();
            let m = (f64::from(p) + f64::from(t)) / 2.0;
            assert_eq!((m as f32) < t, m <= edge, "{t}");
        }
    }

    /// `v` encoded by the columns `lowering` collected (for a feature that
    /// is a number when `v` is one, else a category of 200 codes), with
    /// `tree`'s columns renumbered to match.
    fn encode(lowering: Lowering, tree: &mut Tree, v: Value) -> Vec<f64> {
        use crate::model::{fields::Fields, schema::Feature, schema::Schema};
        let feature = match v {
            Value::Number(_) => crate::model::import::number_feature("x"),
            _ => Feature::category("c", (0..200).map(|c| c.to_string()).collect(), None),
        };
        let fields = Fields::new(Schema { features: vec![feature] }).unwrap();
        let e = Encoder::derived(lowering.finish(std::slice::from_mut(tree)), &fields);
        let values = [v];
        let mut x = vec![0.0; e.width()];
        e.encode_into(crate::model::row::Row::of(&values), &mut x);
        x
    }

    /// Where the lowered tree sends `v`: the library's left (0) or right (1) leaf.
    fn goes(test: Test, v: Value) -> f64 {
        let nodes = [
            Node::Split { test, left: 1, right: 2, cover: 2.0 },
            Node::Leaf { value: 0.0, cover: 1.0 },
            Node::Leaf { value: 1.0, cover: 1.0 },
        ];
        let mut l = Lowering::new();
        let (mut tree, covers) = l.tree(&nodes, 1.0).unwrap();
        assert_eq!(covers, [2.0, 1.0, 1.0]);
        let x = encode(l, &mut tree, v);
        tree.value[tree.path(&x).last().unwrap()]
    }

    #[test]
    fn number_splits_send_missing_values_where_the_library_does() {
        let split = |rule, missing| Test::Number { feature: 0, rule, le: 2.0, missing };
        for (rule, missing) in [(MissingRule::Nan, Side::Left), (MissingRule::Nan, Side::Right)] {
            assert_eq!(goes(split(rule, missing), Value::Number(2.0)), 0.0);
            assert_eq!(goes(split(rule, missing), Value::Number(2.0f64.next_up())), 1.0);
            assert_eq!(goes(split(rule, missing), Value::Number(-7.0)), 0.0);
            assert_eq!(goes(split(rule, missing), Value::Missing), missing.bit() as f64);
        }
        // LightGBM None: missing reads as 0 (left of 2); Zero: ±tiny is missing.
        assert_eq!(goes(split(MissingRule::NanAsZero, Side::Right), Value::Missing), 0.0);
        let zero = |missing| Test::Number { feature: 0, rule: MissingRule::ZeroAsNan, le: -1.0, missing };
        assert_eq!(goes(zero(Side::Left), Value::Number(1e-36)), 0.0);
        assert_eq!(goes(zero(Side::Right), Value::Number(-0.0)), 1.0);
        assert_eq!(goes(zero(Side::Left), Value::Number(0.5)), 1.0);
        assert_eq!(goes(zero(Side::Left), Value::Missing), 0.0);
    }

    #[test]
    fn float_splits_compare_the_f32_result_and_send_nan_where_told() {
        let bits = f32::to_bits;
        let scale: Box<[FloatStep]> = vec![FloatStep::Scale { offset: bits(0.1), scale: bits(10.0) }].into();
        let t = (0.6f32 - 0.1f32) * 10.0;
        let split = |missing| Test::Float { feature: 0, steps: scale.clone(), le: f64::from(t), missing };
        for missing in [Side::Left, Side::Right] {
            assert_eq!(goes(split(missing), Value::Number(0.6)), 0.0, "exactly the threshold in f32");
            assert_eq!(goes(split(missing), Value::Number(f64::from(0.6f32.next_up()))), 1.0);
            assert_eq!(goes(split(missing), Value::Missing), missing.bit() as f64);
        }
    }

    #[test]
    fn set_splits_follow_the_library_rule_for_members_missing_and_unseen() {
        let test = || Test::Member {
            feature: 0,
            set: vec![1, 70],
            inside: Side::Right,
            missing: Side::Left,
            unseen: Side::Right,
        };
        assert_eq!(goes(test(), Value::Category(1)), 1.0);
        assert_eq!(goes(test(), Value::Category(70)), 1.0);
        assert_eq!(goes(test(), Value::Category(2)), 0.0);
        assert_eq!(goes(test(), Value::Category(190)), 0.0, "past the set's end: not chosen");
        assert_eq!(goes(test(), Value::Missing), 0.0);
        assert_eq!(goes(test(), Value::Unseen(0)), 1.0);
        assert_eq!(goes(test(), Value::Number(70.9)), 1.0, "a number's integer part");
        assert_eq!(goes(test(), Value::Number(-1.0)), 0.0, "negative: not chosen");
    }

    #[test]
    fn identical_splits_share_a_column_and_bad_trees_are_refused() {
        let split = || Node::Split {
            test: Test::Number { feature: 0, rule: MissingRule::Nan, le: 1.0, missing: Side::Left },
            left: 1,
            right: 2,
            cover: 1.0,
        };
        let leaf = Node::Leaf { value: 0.5, cover: 1.0 };
        let mut l = Lowering::new();
        let mut trees = vec![
            l.tree(&[split(), leaf.clone(), leaf.clone()], 1.0).unwrap().0,
            l.tree(&[split(), leaf.clone(), leaf.clone()], 1.0).unwrap().0,
        ];
        assert_eq!(l.finish(&mut trees).len(), 1);
        let mut l = Lowering::new();
        let looped = [
            split(),
            leaf.clone(),
            Node::Split {
                test: Test::Number { feature: 0, rule: MissingRule::Nan, le: 0.0, missing: Side::Left },
                left: 1,
                right: 1,
                cover: 1.0,
            },
        ];
        assert!(l.tree(&looped, 1.0).unwrap_err().contains("two parents"));
        assert!(l
            .tree(
                &[
                    Node::Split {
                        test: Test::Number { feature: 0, rule: MissingRule::Nan, le: 0.0, missing: Side::Left },
                        left: 1,
                        right: 9,
                        cover: 1.0
                    },
                    leaf
                ],
                1.0
            )
            .unwrap_err()
            .contains("outside"));
    }
}
