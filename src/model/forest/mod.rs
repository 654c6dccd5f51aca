//! The compiled random forest: every tree of a model file in one flat array
//! of 16-byte nodes, checked once at load and walked without branches, for
//! one row (ten trees side by side; six when explaining) or for many rows
//! (twelve rows side by side, tree by tree).
//!
//! **Layout.** Every tree's root comes first (in tree order, so tree `t`'s
//! root is node `t`), then each tree's nodes subtree by subtree: a node's
//! two children, then the whole subtree of the first, then that of the
//! second ([`subtree_order`]), so a walk mostly moves to nearby nodes. The
//! two children of a node are adjacent, `child` (rows with `x[column] <=
//! threshold`) and `child + 1` (the others, NaN included), so a node is a
//! threshold, a column and one index, and a step is `child + !(x[column] <=
//! threshold)`: no branch.
//!
//! **Leaves.** A leaf is a node whose `child` is itself, whose `column` is
//! the *padding column* (one past the model's encoded columns, always −∞)
//! and whose `threshold` is its value: `−∞ <= v` holds for any value, so a
//! walk that reaches a leaf stays there whatever else it does, whether the
//! leaf holds a probability (a forest) or a negative margin (a boosted
//! tree). Rows are therefore walked with one extra column, which the walk
//! sets to −∞ itself ([`CompiledForest::probability_in`]).
//!
//! **Checks.** Compilation refuses, naming the tree and node: children that
//! do not lie strictly after their parent (so no walk loops), columns
//! outside the encoded width, NaN thresholds, leaf values that are not
//! probabilities, a node whose two children are the same node, a node that
//! two parents point to (a tree's nodes have one parent each; a DAG would
//! have to be copied per path), and the limits of [`super::limits`]:
//! trees, nodes per tree, total nodes, depth. Nodes no walk can reach are
//! dropped. It measures the worst-case cost of one prediction, the sum over
//! trees of (depth + 1), and computes the node means explanations use.
//!
//! **Exactness.** Every walk adds the trees' leaf values in tree order,
//! starting from 0.0, then divides by the number of trees: the plain average,
//! the same bits whichever walk computed it. Tests hold all of them to the
//! straightforward walk of the file's arrays
//! ([`super::estimator::Estimator::reference_probability`]).

mod leaf_terms;

use super::limits::{MAX_NODES_PER_TREE, MAX_TREES, MAX_TREE_DEPTH};
use super::tree::Tree;
use leaf_terms::{Dense, DenseSums, LeafSink, LeafTerms, NoLeaves, Sparse, SparseSums};

/// Why a forest cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForestError {
    #[error("forest has no trees")]
    NoTrees,
    #[error("tree {tree}: {problem}")]
    BadTree { tree: usize, problem: String },
    #[error("forest has {0} nodes in total, more than the limit of {MAX_TOTAL_NODES}")]
    TooManyNodes(usize),
    #[error("forest has {0} trees, more than the limit of {MAX_TREES} (max_trees)")]
    TooManyTrees(usize),
    #[error("tree {tree} has {nodes} nodes, more than the limit of {MAX_NODES_PER_TREE} (max_nodes_per_tree)")]
    TreeTooLarge { tree: usize, nodes: usize },
    #[error("tree {tree} is deeper than the limit of {MAX_TREE_DEPTH} levels (max_tree_depth) at node {node}")]
    TreeTooDeep { tree: usize, node: usize },
}

/// What the padding column holds: below every threshold, so a leaf (whose
/// column is the padding column and whose child is itself) never moves.
const PAD: f64 = f64::NEG_INFINITY;

/// Largest number of tree nodes a model may hold in total.
pub const MAX_TOTAL_NODES: usize = 20_000_000;

/// One node of the compiled forest (see the module doc): 16 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Node {
    /// Rows with `x[column] <= threshold` go to `child`; a leaf's probability.
    threshold: f64,
    column: u32,
    /// The left child (the right one is `child + 1`); a leaf: itself.
    child: u32,
}

/// Trees walked side by side to score one row: independent walks, so the
/// CPU overlaps their memory loads. Measured (`cargo bench --bench predict`,
/// `batch_1000_model_one_by_one`, the bundled 100-tree model, per row): 4
/// lanes 2.68 µs, 8 1.76, 10 1.52, 12 1.60, 13 1.57, 14 1.68, 16 1.72 with
/// groups of similar depth; 8 1.71, 10 1.47, 12 1.55 with groups of
/// consecutive trees, as now. Ten walks and their loop fit x86-64's sixteen
/// registers; more spill to the stack.
const SCORE_LANES: usize = 10;
/// Trees walked side by side to explain one row. Its walk also credits
/// every move to a column (a branch and a store per move), which leaves
/// fewer registers. `cargo bench --bench explain`'s `explained_top4`, with
/// groups of consecutive trees: 4 lanes 4.28 µs, 5 4.12, 6 4.07–4.12, 8
/// 4.57, 10 5.23.
const EXPLAIN_LANES: usize = 6;
/// Rows walked side by side through one tree, for many rows. Measured
/// (`batch_1000_model_only`, per row): 8 lanes 1.43 µs, 10 1.30, 12 1.26,
/// 16 1.28.
pub(crate) const ROW_LANES: usize = 12;

/// `LANES` trees walked together: their roots (tree `t`'s root is node
/// `t`; a lane without a tree starts at the filler leaf) and the steps that
/// bring the deepest of them to a leaf.
#[derive(Debug, Clone, Copy)]
struct TreeGroup<const LANES: usize> {
    roots: [u32; LANES],
    steps: u32,
}

/// How the values of the leaves a row reaches become its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Combine {
    /// Their plain average; each leaf a probability in `[0, 1]` (a random forest).
    Mean,
    /// `base` plus their sum; leaves any finite value (boosted trees' margin).
    Sum { base: f64 },
    /// Their sum computed in `f32`, leaf by leaf in tree order, as ONNX
    /// Runtime's tree ensemble accumulates `float` scores (an ONNX
    /// pipeline's forest, whose leaves already sum to the probability);
    /// leaves any finite value.
    SumF32,
}

impl Combine {
    /// The score of the leaves' `total` over `trees` trees.
    #[inline(always)]
    fn finish(self, total: f64, trees: usize) -> f64 {
        match self {
            Combine::Mean => total / trees as f64,
            Combine::Sum { base } => base + total,
            Combine::SumF32 => total,
        }
    }

    /// The running `total` with one more `leaf` added.
    #[inline(always)]
    fn add(self, total: f64, leaf: f64) -> f64 {
        match self {
            Combine::SumF32 => f64::from(total as f32 + leaf as f32),
            _ => total + leaf,
        }
    }

    /// What each leaf's (and node mean's) share of the score is.
    fn scale(self, trees: usize) -> f64 {
        match self {
            Combine::Mean => 1.0 / trees as f64,
            Combine::Sum { .. } | Combine::SumF32 => 1.0,
        }
    }
}

/// A tree ensemble compiled for scoring (see the module doc).
#[derive(Debug, Clone)]
pub struct CompiledForest {
    nodes: Vec<Node>,
    /// `nodes.len() - 1`, a power of two minus one.
    node_mask: usize,
    /// The trees, [`SCORE_LANES`] at a time, for scoring; the last group is
    /// filled up with a leaf of probability 0, which adds exactly nothing.
    score_groups: Vec<TreeGroup<SCORE_LANES>>,
    /// The same, [`EXPLAIN_LANES`] at a time, for explaining.
    explain_groups: Vec<TreeGroup<EXPLAIN_LANES>>,
    /// Per tree: its depth, the steps that bring any row to its leaf.
    depths: Vec<u32>,
    /// The padding column: the model's encoded width.
    pad: usize,
    /// Worst-case nodes visited per row: the sum over trees of (depth + 1).
    cost: u64,
    /// How leaf values become the score.
    combine: Combine,
    /// Per leaf, its path's contributions summed by feature, once
    /// [`Self::index_leaves`] has run: explaining a row is then the scoring
    /// walk plus a few adds per tree.
    leaf_terms: Option<LeafTerms>,
    /// Per node: the mean leaf probability under it, weighted by the
    /// training rows that reached each (explanations only; scoring never
    /// reads it, so `nodes` stays compact).
    means: Vec<f64>,
}

impl CompiledForest {
    /// Checks a random forest's `trees` against the encoded `width` and
    /// compiles them (leaves are probabilities, averaged).
    pub fn compile(trees: &[Tree], width: usize) -> Result<CompiledForest, ForestError> {
        CompiledForest::compile_combined(trees, width, Combine::Mean)
    }

    /// Checks `trees` against the encoded `width` and compiles them, their
    /// leaves combined by `combine`.
    pub fn compile_combined(trees: &[Tree], width: usize, combine: Combine) -> Result<CompiledForest, ForestError> {
        if let Combine::Sum { base } = combine {
            if !base.is_finite() {
                return Err(ForestError::BadTree { tree: 0, problem: format!("base score {base} is not finite") });
            }
        }
        if trees.is_empty() {
            return Err(ForestError::NoTrees);
        }
        if trees.len() > MAX_TREES {
            return Err(ForestError::TooManyTrees(trees.len()));
        }
        let total: usize = trees.iter().map(|t| t.feature.len()).sum();
        if total > MAX_TOTAL_NODES {
            return Err(ForestError::TooManyNodes(total));
        }
        // Where each tree's nodes start in the flat per-node tables below.
        let mut start = Vec::with_capacity(trees.len() + 1);
        start.push(0);
        for (t, tree) in trees.iter().enumerate() {
            super::pacing::checkpoint();
            check_tree(t, tree, width, combine)?;
            start.push(start[t] + tree.feature.len());
        }
        // Widths are at most `MAX_ENCODED_WIDTH`; columns are checked above.
        let pad = u32::try_from(width).unwrap_or(u32::MAX);

        // Level order across the forest first (`subtree_order` lays the
        // nodes out for walking once they are checked): `order[k]` = (tree,
        // node in the file) of compiled node k. The roots come first; each internal
        // node, when its turn comes, appends its two children. A level ends
        // where the nodes appended while walking the previous one end.
        let mut order: Vec<(u32, u32)> = Vec::with_capacity(total);
        order.extend((0..trees.len() as u32).map(|t| (t, 0)));
        let mut has_parent = vec![false; total];
        let mut depths = vec![0u32; trees.len()];
        let mut nodes: Vec<Node> = Vec::with_capacity(total + 1);
        let (mut depth, mut level_end) = (0u32, order.len());
        let mut k = 0;
        while k < order.len() {
            if k == level_end {
                depth += 1;
                level_end = order.len();
            }
            super::pacing::checkpoint();
            let (t, i) = order[k];
            let (tu, iu) = (t as usize, i as usize);
            let tree = &trees[tu];
            let f = tree.feature[iu];
            if f == -1 {
                nodes.push(Node { threshold: tree.value[iu], column: pad, child: k as u32 });
                k += 1;
                continue;
            }
            if depth as usize >= MAX_TREE_DEPTH {
                return Err(ForestError::TreeTooDeep { tree: tu, node: iu });
            }
            let bad = |problem: String| ForestError::BadTree { tree: tu, problem };
            let (l, r) = (tree.left[iu], tree.right[iu]);
            if l == r {
                return Err(bad(format!("node {i} has node {l} as both children")));
            }
            for c in [l, r] {
                let seen = &mut has_parent[start[tu] + c as usize];
                if *seen {
                    return Err(bad(format!("node {c} has two parents; each node of a tree has one")));
                }
                *seen = true;
            }
            let child = order.len() as u32;
            order.push((t, l));
            order.push((t, r));
            depths[tu] = depths[tu].max(depth + 1);
            nodes.push(Node { threshold: tree.threshold[iu], column: f as u32, child });
            k += 1;
        }
        drop(has_parent);
        let means = node_means(trees, &order, &nodes);
        drop(order);
        let (mut nodes, means) = subtree_order(&nodes, &means, trees.len());
        // The filler of the last group: a leaf of probability 0.
        let filler = nodes.len() as u32;
        nodes.push(Node { threshold: 0.0, column: pad, child: filler });
        let mut means = means;
        means.push(0.0);
        // Up to a power of two (with leaves that are never reached), so
        // that masking an index proves it in bounds: walks need no check.
        let node_mask = nodes.len().next_power_of_two() - 1;
        let mut k = nodes.len() as u32;
        nodes.resize_with(node_mask + 1, || {
            k += 1;
            Node { threshold: 0.0, column: pad, child: k - 1 }
        });

        // Consecutive trees walk together, so each group's leaves are added
        // in tree order as it ends: no note of every leaf, no second pass.
        // (Grouping trees by depth instead wasted fewer steps but needed
        // that note to sum in tree order: 3 % slower in all.)
        let score_groups = tree_groups(&depths, filler);
        let explain_groups = tree_groups(&depths, filler);
        let cost = depths.iter().map(|&d| u64::from(d) + 1).sum();
        Ok(CompiledForest {
            nodes,
            node_mask,
            score_groups,
            explain_groups,
            depths,
            pad: width,
            cost,
            combine,
            leaf_terms: None,
            means,
        })
    }

    /// Worst-case nodes visited per row: the sum over trees of (depth + 1).
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// The encoded width rows have (the padding column's index).
    pub fn width(&self) -> usize {
        self.pad
    }

    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.depths.len()
    }

    /// Number of compiled nodes (reachable nodes of every tree).
    pub fn node_count(&self) -> usize {
        self.means.len() - 1
    }

    /// Bytes the compiled nodes take (16 per node).
    pub fn node_bytes(&self) -> usize {
        std::mem::size_of_val(self.nodes.as_slice())
    }

    /// The score of the roots' means: the training late rate, for a
    /// forest with counted trees.
    pub fn base_score(&self) -> f64 {
        self.combine.finish(self.means[..self.trees()].iter().sum::<f64>(), self.trees())
    }

    /// P(late) for one encoded row: `x[..width]` holds the row and `x` has
    /// room for the padding column, which this sets to −∞. Allocation-free.
    #[inline]
    pub fn probability_in(&self, x: &mut [f64]) -> f64 {
        x[self.pad] = PAD;
        match short_row(x, self.pad) {
            Some(x) => self.walk_trees(&self.score_groups, x, |_, _, _| {}, NoLeaves).0,
            None => self.walk_trees(&self.score_groups, &*x, |_, _, _| {}, NoLeaves).0,
        }
    }

    /// Exact per-column attribution of one row (see
    /// [`super::estimator::CompiledEstimator::contributions`]); `x` as for
    /// [`Self::probability_in`]. Returns the probability, from the same walk.
    pub fn contributions_in(&self, x: &mut [f64], out: &mut [f64]) -> f64 {
        x[self.pad] = PAD;
        let scale = self.combine.scale(self.trees());
        let means = &self.means;
        // Each split crossed credits its column with the change of the node
        // mean (a leaf never moves, so it credits nothing).
        let credit = |column: usize, from: u32, to: u32| {
            out[column] += (means[to as usize] - means[from as usize]) * scale;
        };
        match short_row(x, self.pad) {
            Some(x) => self.walk_trees(&self.explain_groups, x, credit, NoLeaves).0,
            None => self.walk_trees(&self.explain_groups, &*x, credit, NoLeaves).0,
        }
    }

    /// Computes each leaf's path contributions (Saabas: every split on the
    /// way credits its column's group with the change of the node mean),
    /// summed by group (`column_group[column]`, such as the feature a
    /// one-hot column belongs to) and scaled to the score: a property of the
    /// leaf alone, so [`Self::group_contributions_in`] only adds them up.
    pub fn index_leaves(&mut self, column_group: &[u16]) {
        let n = self.means.len();
        let mut parent = vec![u32::MAX; n];
        for (k, node) in self.nodes[..n].iter().enumerate() {
            let child = node.child as usize;
            if child != k && child + 1 < n {
                parent[child] = k as u32;
                parent[child + 1] = k as u32;
            }
        }
        let scale = self.combine.scale(self.trees());
        let mut start = Vec::with_capacity(n + 1);
        let (mut groups, mut deltas) = (Vec::new(), Vec::new());
        let mut path: Vec<(u16, f64)> = Vec::new();
        for k in 0..n {
            super::pacing::checkpoint();
            start.push(groups.len() as u32);
            if self.nodes[k].child as usize != k {
                continue; // not a leaf
            }
            path.clear();
            let mut at = k;
            while let Some(&up) = parent.get(at).filter(|&&p| p != u32::MAX) {
                let up = up as usize;
                let group = column_group.get(self.nodes[up].column as usize).copied().unwrap_or(0);
                let delta = (self.means[at] - self.means[up]) * scale;
                match path.iter_mut().find(|(g, _)| *g == group) {
                    Some((_, d)) => *d += delta,
                    None => path.push((group, delta)),
                }
                at = up;
            }
            for &(g, d) in &path {
                groups.push(g);
                deltas.push(d);
            }
        }
        start.push(groups.len() as u32);
        let sparse = Sparse { start, groups, deltas };
        let width = column_group.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
        self.leaf_terms = Some(LeafTerms::of(sparse, width));
    }

    /// The score of one row, and its contributions by group (see
    /// [`Self::index_leaves`]) added to `out`: the scoring walk, then each
    /// reached leaf's terms. `None` before [`Self::index_leaves`]. The score
    /// has the bits of [`Self::probability_in`]. Allocation-free.
    pub fn group_contributions_in(&self, x: &mut [f64], out: &mut [f64]) -> Option<f64> {
        let terms = self.leaf_terms.as_ref()?;
        x[self.pad] = PAD;
        Some(match terms {
            LeafTerms::Dense2(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Dense4(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Dense6(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Dense8(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Dense10(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Dense12(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Dense14(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Dense16(d) => self.dense_contributions_in(d, x, out),
            LeafTerms::Sparse(t) => {
                let sums = SparseSums { terms: t, out };
                match short_row(x, self.pad) {
                    Some(x) => self.walk_trees(&self.score_groups, x, |_, _, _| {}, sums).0,
                    None => self.walk_trees(&self.score_groups, &*x, |_, _, _| {}, sums).0,
                }
            }
        })
    }

    /// [`Self::group_contributions_in`] with dense rows of `N` values: the
    /// sums run in `N` locals (registers, not `out` in memory, whose every
    /// add waited for the store of the one before), started from `out` and
    /// written back once, so each of `out`'s values gets the same adds in
    /// the same order: the same bits. The padding columns' sums are dropped.
    #[inline(always)]
    fn dense_contributions_in<const N: usize>(&self, d: &Dense<N>, x: &mut [f64], out: &mut [f64]) -> f64 {
        let out = &mut out[..d.width];
        let mut sums = DenseSums { terms: d, sums: [0.0f64; N] };
        sums.sums[..out.len()].copy_from_slice(out);
        let (total, sums) = match short_row(x, self.pad) {
            Some(x) => self.walk_trees(&self.score_groups, x, |_, _, _| {}, sums),
            None => self.walk_trees(&self.score_groups, &*x, |_, _, _| {}, sums),
        };
        out.copy_from_slice(&sums.sums[..out.len()]);
        total
    }

    /// The stride [`Self::probabilities_in`] walks rows in place with: a
    /// short row ([`SHORT_ROW`] values) when the model is narrow enough,
    /// else the width plus the padding column.
    pub fn batch_stride(&self) -> usize {
        if self.pad < SHORT_ROW {
            SHORT_ROW
        } else {
            self.pad + 1
        }
    }

    /// P(late) for many rows at once: row `r` is `rows[r * stride ..][..width]`
    /// (`stride` > width) and its probability goes to `out[r]`. With the
    /// [`Self::batch_stride`], rows are walked where they are,
    /// [`ROW_LANES`] at a time (that many short rows side by side are a
    /// [`LaneGroup`]), tree by tree, the lanes side by side: each tree's
    /// nodes are read from the L1 cache for every group after the first.
    /// Rows left over (fewer than [`ROW_LANES`]), and all rows at another
    /// stride, take the one-row walk. Either way this sets each row's padding
    /// column, and the sums are those of [`Self::probability_in`] on each
    /// row, in the same order.
    pub fn probabilities_in(&self, rows: &mut [f64], stride: usize, out: &mut [f64]) {
        assert!(stride > self.pad && rows.len() >= out.len() * stride, "rows too short for the batch");
        let n = out.len();
        let groups = if stride == SHORT_ROW && self.pad < SHORT_ROW { n / ROW_LANES } else { 0 };
        let (in_groups, _) = rows.split_at_mut(groups * ROW_LANES * SHORT_ROW);
        let (short_rows, _) = in_groups.as_chunks_mut::<SHORT_ROW>();
        for row in short_rows.iter_mut() {
            row[self.pad] = PAD;
        }
        let (lanes, _): (&[LaneGroup], _) = short_rows.as_chunks::<ROW_LANES>();
        let (grouped, rest) = out.split_at_mut(groups * ROW_LANES);
        grouped.fill(0.0);
        let nodes = &self.nodes[..=self.node_mask];
        for (t, &steps) in self.depths.iter().enumerate() {
            for (group, sums) in lanes.iter().zip(grouped.chunks_exact_mut(ROW_LANES)) {
                let mut at = [t as u32; ROW_LANES];
                for _ in 0..steps {
                    for (l, a) in at.iter_mut().enumerate() {
                        let node = nodes[*a as usize & self.node_mask];
                        let v = group[l][node.column as usize & (SHORT_ROW - 1)];
                        *a = node.child + goes_right(v, node.threshold);
                    }
                }
                for (sum, &a) in sums.iter_mut().zip(&at) {
                    *sum = self.combine.add(*sum, nodes[a as usize & self.node_mask].threshold);
                }
            }
        }
        for o in grouped.iter_mut() {
            *o = self.combine.finish(*o, self.trees());
        }
        for (r, o) in rest.iter_mut().enumerate() {
            *o = self.probability_in(&mut rows[(groups * ROW_LANES + r) * stride..][..stride]);
        }
    }

    /// The walk scoring and explaining share: the trees of a group
    /// (consecutive trees) step side by side until the group is done (a
    /// step that moves none of its walks; children lie strictly after their
    /// parent, so that happens within its deepest tree's steps), and its
    /// leaves are added to the sum, in tree order. `step(column, from, to)`
    /// sees every move and `leaves_of` each group's reached leaves
    /// (no-ops for scoring, which the compiler removes).
    /// Returns the leaves' average and `leaves_of`: the sink is moved in
    /// and out, not borrowed, so its sums stay in registers for the whole
    /// walk (behind a `&mut`, every add was also stored back to memory).
    #[inline(always)]
    fn walk_trees<const LANES: usize, S: LeafSink>(
        &self,
        groups: &[TreeGroup<LANES>],
        x: impl Row,
        mut step: impl FnMut(usize, u32, u32),
        mut leaves_of: S,
    ) -> (f64, S) {
        let nodes = &self.nodes[..=self.node_mask];
        let mut total = 0.0;
        for group in groups {
            let mut at = group.roots;
            // A step never moves a walk backwards (children lie after their
            // parent; a leaf stays put), so it moved none of them exactly
            // when the sum of the positions did not change: one add per walk
            // instead of a compare and an or, and no copy of the old ones.
            let mut sum = lane_sum(&at);
            for _ in 0..group.steps {
                for a in &mut at {
                    let node = nodes[*a as usize & self.node_mask];
                    let next = node.child + goes_right(x.get(node.column), node.threshold);
                    if next != *a {
                        step(node.column as usize, *a, next);
                    }
                    *a = next;
                }
                let moved_to = lane_sum(&at);
                if moved_to == sum {
                    break;
                }
                sum = moved_to;
            }
            // Groups hold consecutive trees, so this is tree order; a
            // filler lane, only ever at the end, adds 0.0, which changes
            // no bit of a sum of probabilities.
            for &leaf in &at {
                total = self.combine.add(total, nodes[leaf as usize & self.node_mask].threshold);
            }
            leaves_of.add(&at);
        }
        (self.combine.finish(total, self.trees()), leaves_of)
    }
}

/// The sum of walk positions (node indices are below 2^32, so a few of
/// them cannot overflow a `u64`).
#[inline(always)]
fn lane_sum<const LANES: usize>(at: &[u32; LANES]) -> u64 {
    at.iter().map(|&a| u64::from(a)).sum()
}

/// The trees in order, `LANES` at a time, each group with the steps its
/// deepest tree needs; the last group filled up with `filler`.
fn tree_groups<const LANES: usize>(depths: &[u32], filler: u32) -> Vec<TreeGroup<LANES>> {
    (0..depths.len())
        .step_by(LANES)
        .map(|first| {
            let mut group = TreeGroup { roots: [filler; LANES], steps: 0 };
            for (lane, t) in group.roots.iter_mut().zip(first..depths.len()) {
                *lane = t as u32;
                group.steps = group.steps.max(depths[t]);
            }
            group
        })
        .collect()
}

/// Rows of models narrower than this (the bundled one has 41 columns) are
/// read through fixed-size arrays, so masking a node's column proves the
/// read in bounds: the walks do no bounds check per step.
const SHORT_ROW: usize = 64;

/// [`ROW_LANES`] short rows side by side: `group[lane][column]`. A lane's
/// read is the base, the lane's fixed offset and the column times 8: one
/// addressing mode, no shift per step.
type LaneGroup = [[f64; SHORT_ROW]; ROW_LANES];

/// 1 when a row with value `v` goes to the right child: unless `v <=
/// threshold`, so NaN goes right, as in the file's trees. Written as the
/// negated comparison on purpose: it compiles to a compare and an add with
/// carry, no branch.
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn goes_right(v: f64, threshold: f64) -> u32 {
    u32::from(!(v <= threshold))
}

/// How a walk reads a row's column.
trait Row: Copy {
    fn get(self, column: u32) -> f64;
}

/// A short row: no bounds check (the mask keeps the index inside).
impl Row for &[f64; SHORT_ROW] {
    #[inline(always)]
    fn get(self, column: u32) -> f64 {
        self[column as usize & (SHORT_ROW - 1)]
    }
}

/// Any row: a bounds-checked read.
impl Row for &[f64] {
    #[inline(always)]
    fn get(self, column: u32) -> f64 {
        self[column as usize]
    }
}

/// `x` as a short row, when the model is narrow enough and `x` long enough.
fn short_row(x: &[f64], pad: usize) -> Option<&[f64; SHORT_ROW]> {
    if pad < SHORT_ROW {
        x.get(..SHORT_ROW).and_then(|x| x.try_into().ok())
    } else {
        None
    }
}

/// Checks one tree's arrays as stored, before anything is compiled: equal
/// lengths, columns inside the width, children strictly after their
/// parent and inside the tree, thresholds not NaN, leaf values that are
/// probabilities (averaged) or finite (summed). (Reachability, depth and
/// shared children are checked while the forest is laid out.)
fn check_tree(t: usize, tree: &Tree, width: usize, combine: Combine) -> Result<(), ForestError> {
    let bad = |problem: String| ForestError::BadTree { tree: t, problem };
    let n = tree.feature.len();
    if n == 0 {
        return Err(bad("has no nodes".into()));
    }
    if n > MAX_NODES_PER_TREE {
        return Err(ForestError::TreeTooLarge { tree: t, nodes: n });
    }
    if [tree.threshold.len(), tree.left.len(), tree.right.len(), tree.value.len()] != [n; 4]
        || !(tree.samples.is_empty() || tree.samples.len() == n)
    {
        return Err(bad("its arrays have different lengths".into()));
    }
    for i in 0..n {
        let f = tree.feature[i];
        if f == -1 {
            let v = tree.value[i];
            match combine {
                Combine::Mean if !(0.0..=1.0).contains(&v) => {
                    return Err(bad(format!("leaf {i} has value {v}, not a probability")));
                }
                Combine::Sum { .. } | Combine::SumF32 if !v.is_finite() => {
                    return Err(bad(format!("leaf {i} has value {v}, not a finite number")));
                }
                _ => {}
            }
            continue;
        }
        if f < 0 || f as usize >= width {
            return Err(bad(format!("node {i} splits on column {f}, outside 0..{width}")));
        }
        let (l, r) = (tree.left[i] as usize, tree.right[i] as usize);
        // Children strictly after their parent: no cycles, so every walk ends.
        if l <= i || r <= i || l >= n || r >= n {
            return Err(bad(format!("node {i} has children {l} and {r}; they must lie in {}..{n}", i + 1)));
        }
        if tree.threshold[i].is_nan() {
            return Err(bad(format!("node {i} has a NaN threshold")));
        }
    }
    Ok(())
}

/// Re-lays out level-ordered `nodes` (and their `means`) with the `roots`
/// first, then each tree subtree by subtree: a node's children's pair, then
/// the first child's whole subtree the same way, then the second's. A walk
/// then mostly moves to nearby nodes (the first child's pair comes right
/// after its parent's) instead of to the next level of all trees, so it
/// touches fewer cache lines: one prediction with the bundled model took
/// 2.03 µs with every node in level order and 1.74 µs laid out like this
/// (keeping the first 2, 3, 4 or 6 levels of all trees together in level
/// order was no faster). Children stay side by side and after their parent.
fn subtree_order(nodes: &[Node], means: &[f64], roots: usize) -> (Vec<Node>, Vec<f64>) {
    let mut new_index: Vec<u32> = (0..nodes.len() as u32).collect();
    let mut placed: Vec<usize> = Vec::with_capacity(nodes.len());
    placed.extend(0..roots);
    let mut stack = Vec::new();
    for root in 0..roots {
        stack.push(root);
        while let Some(k) = stack.pop() {
            super::pacing::checkpoint();
            let child = nodes[k].child as usize;
            if child == k {
                continue; // a leaf
            }
            for c in [child, child + 1] {
                new_index[c] = placed.len() as u32;
                placed.push(c);
            }
            stack.push(child + 1);
            stack.push(child);
        }
    }
    debug_assert_eq!(placed.len(), nodes.len());
    let relaid = placed
        .iter()
        .map(|&old| {
            let node = nodes[old];
            Node { child: new_index[node.child as usize], ..node }
        })
        .collect();
    (relaid, placed.iter().map(|&old| means[old]).collect())
}

/// The node means of the compiled nodes (`order[k]` is compiled node k's
/// tree and node in the file), bottom-up in one backward pass (children lie
/// after their parent): a leaf's mean is its probability; an internal
/// node's is its children's means weighted by the training rows that
/// reached each (equal weights when the file records no counts, or both
/// counts are zero).
fn node_means(trees: &[Tree], order: &[(u32, u32)], nodes: &[Node]) -> Vec<f64> {
    let mut means = vec![0.0; nodes.len()];
    let samples = |k: usize| {
        let (t, i) = order[k];
        trees[t as usize].samples.get(i as usize).copied()
    };
    for k in (0..nodes.len()).rev() {
        super::pacing::checkpoint();
        let node = nodes[k];
        if node.child as usize == k {
            means[k] = node.threshold;
            continue;
        }
        let (l, r) = (node.child as usize, node.child as usize + 1);
        let (wl, wr) = match (samples(l), samples(r)) {
            (Some(a), Some(b)) if a as u64 + b as u64 > 0 => (f64::from(a), f64::from(b)),
            _ => (1.0, 1.0),
        };
        means[k] = (wl * means[l] + wr * means[r]) / (wl + wr);
    }
    means
}

#[cfg(test)]
mod tests;
