//! Exact SHAP values of a tree model on request (`?explain=shap`): the
//! path-dependent Tree SHAP algorithm (Lundberg, Erion and Lee 2018,
//! Algorithm 2), as XGBoost's `pred_contribs` and LightGBM's
//! `pred_contrib` compute it, so their answers are the oracle. Each
//! feature's value is its exact Shapley value for the tree's expectation
//! conditioned on the training cover of every branch; the values and the
//! base value (the trees' cover-weighted mean leaf, plus the model's base
//! margin) add up to the model's score.
//!
//! It walks the trees as their files give them (for an imported model, the
//! lowered trees of [`super::import::lower`], which keep every node and the
//! library's covers), so a row takes the branch it takes when scored; a
//! feature split on through several columns (a number and its negation,
//! several category sets) counts as one feature. The cost is
//! O(leaves × depth²) per tree: about 0.3 ms per row for 100 trees of depth
//! 6, as XGBoost's own `pred_contribs` (`bench/imports.sh`), which is why it
//! is asked for, not the default.

use super::limits::MAX_SCHEMA_FEATURES;
use super::tree::Tree;

/// The SHAP values of one prediction, on the model's score scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Shap {
    /// `log_odds` (boosted trees: the margin before the sigmoid) or
    /// `probability` (a random forest).
    pub scale: &'static str,
    /// The expected score: what the values start from.
    pub base_value: f64,
    /// Per feature, in schema order; the first `features` are used.
    pub values: [f64; MAX_SCHEMA_FEATURES],
    pub features: usize,
}

impl Shap {
    /// The values of the model's features, in schema order.
    pub fn values(&self) -> &[f64] {
        &self.values[..self.features]
    }
}

/// One tree as Tree SHAP reads it.
#[derive(Debug, Clone)]
struct ShapTree {
    /// Per node: the column split on (−1 for a leaf) and its feature.
    column: Vec<i32>,
    feature: Vec<i32>,
    threshold: Vec<f64>,
    left: Vec<u32>,
    right: Vec<u32>,
    /// Leaf values, already multiplied by the tree's weight.
    value: Vec<f64>,
    cover: Vec<f64>,
    /// The cover-weighted mean leaf: the tree's expectation.
    mean: f64,
    depth: usize,
}

/// A tree model prepared for Tree SHAP.
#[derive(Debug, Clone)]
pub struct TreeShap {
    trees: Vec<ShapTree>,
    /// The base value: `base` plus every tree's mean times `scale`.
    base_value: f64,
    /// Multiplies every tree's values (1/trees for a forest's mean).
    scale: f64,
    features: usize,
    space: &'static str,
    max_depth: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: i32,
    zero_fraction: f64,
    one_fraction: f64,
    pweight: f64,
}

impl TreeShap {
    /// `trees` with a cover per node (`covers[t][node]`; `None`: the
    /// trees' `samples`), columns mapped to features by `column_feature`.
    /// Each tree's values count `scale` times; the score starts from
    /// `base`. `None` when a tree has no cover to weigh its branches by.
    pub fn new(
        trees: &[Tree],
        covers: Option<&[Vec<f64>]>,
        column_feature: &[u16],
        features: usize,
        scale: f64,
        base: f64,
        space: &'static str,
    ) -> Option<TreeShap> {
        let mut out = Vec::with_capacity(trees.len());
        for (t, tree) in trees.iter().enumerate() {
            let cover: Vec<f64> = match covers {
                Some(c) => c.get(t)?.clone(),
                None if tree.samples.len() == tree.feature.len() => {
                    tree.samples.iter().map(|&s| f64::from(s)).collect()
                }
                None => return None,
            };
            let feature = tree
                .feature
                .iter()
                .map(|&c| if c < 0 { -1 } else { column_feature.get(c as usize).map_or(-1, |&f| i32::from(f)) })
                .collect();
            let mut st = ShapTree {
                column: tree.feature.clone(),
                feature,
                threshold: tree.threshold.clone(),
                left: tree.left.clone(),
                right: tree.right.clone(),
                value: tree.value.clone(),
                cover,
                mean: 0.0,
                depth: 0,
            };
            let (mean, depth) = st.mean_and_depth(0);
            st.mean = mean;
            st.depth = depth;
            out.push(st);
        }
        let base_value = base + scale * out.iter().map(|t| t.mean).sum::<f64>();
        let max_depth = out.iter().map(|t| t.depth).max().unwrap_or(0);
        Some(TreeShap { trees: out, base_value, scale, features, space, max_depth })
    }

    /// The SHAP values of the encoded row `x`.
    pub fn explain(&self, x: &[f64]) -> Shap {
        let mut values = [0.0; MAX_SCHEMA_FEATURES];
        let maxd = self.max_depth + 2;
        let mut path = vec![PathElement::default(); maxd * (maxd + 1) / 2 + maxd];
        let mut phi = vec![0.0; self.features];
        for tree in &self.trees {
            phi.iter_mut().for_each(|p| *p = 0.0);
            tree.recurse(x, &mut phi, 0, &mut path, 0, 0, 1.0, 1.0, -1);
            for (v, p) in values.iter_mut().zip(&phi) {
                *v += self.scale * p;
            }
        }
        Shap { scale: self.space, base_value: self.base_value, values, features: self.features }
    }
}

impl ShapTree {
    /// The cover-weighted mean leaf under `node` (as XGBoost's
    /// `FillNodeMeanValues`: weighted by each child's cover, over the node's),
    /// and its depth.
    fn mean_and_depth(&self, node: usize) -> (f64, usize) {
        if self.column[node] < 0 {
            return (self.value[node], 0);
        }
        let (l, r) = (self.left[node] as usize, self.right[node] as usize);
        let ((ml, dl), (mr, dr)) = (self.mean_and_depth(l), self.mean_and_depth(r));
        let w = self.cover[node];
        let mean = if w > 0.0 { (ml * self.cover[l] + mr * self.cover[r]) / w } else { (ml + mr) / 2.0 };
        (mean, 1 + dl.max(dr))
    }

    /// Algorithm 2's `RECURSE`, as XGBoost's `RegTree::TreeShap` writes it:
    /// `path[start..]` is this node's copy of its parent's unique path.
    #[allow(clippy::too_many_arguments)]
    fn recurse(
        &self,
        x: &[f64],
        phi: &mut [f64],
        node: usize,
        path: &mut [PathElement],
        start: usize,
        mut unique_depth: usize,
        parent_zero: f64,
        parent_one: f64,
        parent_feature: i32,
    ) {
        // This node's path: a copy of the parent's, extended.
        let here = start + unique_depth + 1;
        path.copy_within(start..here, here);
        let unique = &mut path[here..];
        extend(unique, unique_depth, parent_zero, parent_one, parent_feature);
        if self.column[node] < 0 {
            let leaf = self.value[node];
            for i in 1..=unique_depth {
                let w = unwound_sum(unique, unique_depth, i);
                let el = unique[i];
                if let Some(p) = usize::try_from(el.feature).ok().and_then(|f| phi.get_mut(f)) {
                    *p += w * (el.one_fraction - el.zero_fraction) * leaf;
                }
            }
            return;
        }
        let (l, r) = (self.left[node] as usize, self.right[node] as usize);
        let goes_left = x[self.column[node] as usize] <= self.threshold[node];
        let (hot, cold) = if goes_left { (l, r) } else { (r, l) };
        let w = self.cover[node];
        let fraction = |c: usize| if w > 0.0 { self.cover[c] / w } else { 0.5 };
        let (hot_zero, cold_zero) = (fraction(hot), fraction(cold));
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        let feature = self.feature[node];
        if let Some(k) = (0..=unique_depth).find(|&k| unique[k].feature == feature) {
            incoming_zero = unique[k].zero_fraction;
            incoming_one = unique[k].one_fraction;
            unwind(unique, unique_depth, k);
            unique_depth -= 1;
        }
        self.recurse(x, phi, hot, path, here, unique_depth + 1, hot_zero * incoming_zero, incoming_one, feature);
        self.recurse(x, phi, cold, path, here, unique_depth + 1, cold_zero * incoming_zero, 0.0, feature);
    }
}

fn extend(path: &mut [PathElement], unique_depth: usize, zero: f64, one: f64, feature: i32) {
    path[unique_depth] = PathElement {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        pweight: if unique_depth == 0 { 1.0 } else { 0.0 },
    };
    let d = unique_depth as f64;
    for i in (0..unique_depth).rev() {
        let fi = i as f64;
        path[i + 1].pweight += one * path[i].pweight * (fi + 1.0) / (d + 1.0);
        path[i].pweight = zero * path[i].pweight * (d - fi) / (d + 1.0);
    }
}

fn unwind(path: &mut [PathElement], unique_depth: usize, index: usize) {
    let (one, zero) = (path[index].one_fraction, path[index].zero_fraction);
    let d = unique_depth as f64;
    let mut next_one = path[unique_depth].pweight;
    for i in (0..unique_depth).rev() {
        let fi = i as f64;
        if one != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = next_one * (d + 1.0) / ((fi + 1.0) * one);
            next_one = tmp - path[i].pweight * zero * (d - fi) / (d + 1.0);
        } else {
            path[i].pweight = path[i].pweight * (d + 1.0) / (zero * (d - fi));
        }
    }
    for i in index..unique_depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

fn unwound_sum(path: &[PathElement], unique_depth: usize, index: usize) -> f64 {
    let (one, zero) = (path[index].one_fraction, path[index].zero_fraction);
    let d = unique_depth as f64;
    let mut next_one = path[unique_depth].pweight;
    let mut total = 0.0;
    for i in (0..unique_depth).rev() {
        let fi = i as f64;
        if one != 0.0 {
            let tmp = next_one * (d + 1.0) / ((fi + 1.0) * one);
            total += tmp;
            next_one = path[i].pweight - tmp * zero * ((d - fi) / (d + 1.0));
        } else if zero != 0.0 {
            total += (path[i].pweight / zero) / ((d - fi) / (d + 1.0));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 0.5 ? (x1 <= 0.5 ? 1 : 2) : 3, covers 4 = 2 + 2, 2 = 1 + 1.
    fn tree() -> Tree {
        Tree {
            feature: vec![0, 1, -1, -1, -1],
            threshold: vec![0.5, 0.5, 0.0, 0.0, 0.0],
            left: vec![1, 3, 0, 0, 0],
            right: vec![2, 4, 0, 0, 0],
            value: vec![0.0, 0.0, 3.0, 1.0, 2.0],
            samples: vec![4, 2, 2, 1, 1],
        }
    }

    /// Shapley values by brute force over feature subsets, with the
    /// path-dependent expectation (a feature outside the subset follows
    /// both branches by cover).
    fn brute_force(t: &Tree, x: &[f64]) -> Vec<f64> {
        fn expect(t: &Tree, node: usize, x: &[f64], known: &[bool]) -> f64 {
            if t.feature[node] < 0 {
                return t.value[node];
            }
            let f = t.feature[node] as usize;
            let (l, r) = (t.left[node] as usize, t.right[node] as usize);
            if known[f] {
                return expect(t, if x[f] <= t.threshold[node] { l } else { r }, x, known);
            }
            let (cl, cr, c) = (t.samples[l] as f64, t.samples[r] as f64, t.samples[node] as f64);
            (cl * expect(t, l, x, known) + cr * expect(t, r, x, known)) / c
        }
        let n = 2;
        let fact = |k: usize| (1..=k).product::<usize>() as f64;
        (0..n)
            .map(|i| {
                let mut phi = 0.0;
                for mask in 0..(1 << n) {
                    if mask & (1 << i) != 0 {
                        continue;
                    }
                    let s = (mask as u32).count_ones() as usize;
                    let mut known: Vec<bool> = (0..n).map(|j| mask & (1 << j) != 0).collect();
                    let without = expect(t, 0, x, &known);
                    known[i] = true;
                    let with = expect(t, 0, x, &known);
                    phi += fact(s) * fact(n - s - 1) / fact(n) * (with - without);
                }
                phi
            })
            .collect()
    }

    #[test]
    fn values_are_the_shapley_values_and_add_up_to_the_score() {
        let t = tree();
        let shap = TreeShap::new(std::slice::from_ref(&t), None, &[0, 1], 2, 1.0, 0.25, "log_odds").unwrap();
        for x in [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] {
            let s = shap.explain(&x);
            let want = brute_force(&t, &x);
            for (got, want) in s.values().iter().zip(&want) {
                assert!((got - want).abs() < 1e-12, "{x:?}: {:?} vs {want:?}", s.values());
            }
            let leaf = t.value[t.path(&x).last().unwrap()];
            assert!((s.base_value + s.values().iter().sum::<f64>() - (0.25 + leaf)).abs() < 1e-12);
        }
        assert_eq!(shap.base_value, 0.25 + (3.0 * 2.0 + 1.0 + 2.0) / 4.0);
    }

    #[test]
    fn a_feature_split_twice_on_a_path_counts_once() {
        // x0 <= 0.5 ? (x0 <= 0.2 ? 1 : 2) : 3: only feature 0 matters.
        let mut t = tree();
        t.feature[1] = 0;
        t.threshold[1] = 0.2;
        let shap = TreeShap::new(std::slice::from_ref(&t), None, &[0, 1], 2, 1.0, 0.0, "log_odds").unwrap();
        let s = shap.explain(&[0.1, 7.0]);
        assert!((s.values()[0] - (1.0 - 2.25)).abs() < 1e-12, "{:?}", s.values());
        assert_eq!(s.values()[1], 0.0);
    }
}
