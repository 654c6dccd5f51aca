//! The compiled forest held to the straightforward walk: layout, checks,
//! every walk's exact sums, leaf terms and explanations.

use super::leaf_terms::DENSE_WIDTH;
use super::*;
use crate::model::test_support::small_tree;

fn leaf(p: f64) -> Tree {
    Tree { feature: vec![-1], threshold: vec![0.0], left: vec![0], right: vec![0], value: vec![p], samples: vec![] }
}

#[test]
fn a_node_is_16_bytes_and_the_layout_is_roots_then_subtrees_with_adjacent_children() {
    assert_eq!(std::mem::size_of::<Node>(), 16);
    let forest = CompiledForest::compile(&[small_tree(), leaf(0.3), small_tree()], 2).unwrap();
    // Roots first (0, 1, 2), then tree 0 subtree by subtree (its root's
    // children 3 and 4, then 4's children 5 and 6), then tree 2 (7-10).
    let columns: Vec<u32> = forest.nodes.iter().map(|n| n.column).collect();
    assert_eq!(columns[..12], [0, 2, 0, 2, 1, 2, 2, 2, 1, 2, 2, 2], "2 = the padding column");
    // The filler (11), then leaves up to a power of two that nothing reaches.
    assert_eq!(columns.len(), 16);
    assert!(forest.nodes[11..].iter().enumerate().all(|(i, n)| n.column == 2 && n.child as usize == 11 + i));
    assert_eq!(forest.nodes[0].child, 3);
    assert_eq!(forest.nodes[2].child, 7);
    assert_eq!(forest.nodes[4].child, 5);
    assert_eq!(forest.nodes[8].child, 9);
    assert_eq!(forest.nodes[1].child, 1, "a leaf points to itself");
    assert_eq!(forest.node_count(), 11);
    assert_eq!(forest.cost(), 3 + 1 + 3);
}

#[test]
fn one_row_and_many_rows_give_the_plain_average_of_the_leaves() {
    let forest = CompiledForest::compile(&[small_tree(), leaf(0.3)], 2).unwrap();
    let rows = [[0.0, 0.0], [1.0, 2.0], [1.0, 3.0], [f64::NAN, 0.0]];
    let want = [(0.1 + 0.3) / 2.0, (0.4 + 0.3) / 2.0, (0.9 + 0.3) / 2.0, (0.4 + 0.3) / 2.0];
    let mut flat = Vec::new();
    for (row, want) in rows.iter().zip(want) {
        let mut x = [row[0], row[1], 9.0];
        assert_eq!(forest.probability_in(&mut x), want, "{row:?}");
        assert_eq!(x[2], PAD, "the padding column is set");
        flat.extend([row[0], row[1], 7.0, 7.0]);
    }
    // NaN goes right, as `x <= threshold` is false.
    for n in 1..=rows.len() {
        let mut out = vec![f64::NAN; n];
        forest.probabilities_in(&mut flat.clone(), 4, &mut out);
        assert_eq!(out, want[..n]);
    }
    // At the batch stride, groups of `ROW_LANES` rows are walked in place (and
    // the rest one by one), whatever the padding column held.
    assert_eq!(forest.batch_stride(), SHORT_ROW);
    let n = 2 * ROW_LANES + 1;
    let mut short = vec![7.0; n * SHORT_ROW];
    for (r, row) in short.chunks_exact_mut(SHORT_ROW).enumerate() {
        row[..2].copy_from_slice(&rows[r % rows.len()]);
    }
    let mut out = vec![f64::NAN; n];
    forest.probabilities_in(&mut short, SHORT_ROW, &mut out);
    let expected: Vec<f64> = (0..n).map(|r| want[r % rows.len()]).collect();
    assert_eq!(out, expected);
    assert!(short.chunks_exact(SHORT_ROW).all(|row| row[2] == PAD), "every padding column is set");
}

/// A leaf stays put for any value, negative ones included (a boosted
/// tree's margins): the padding column it reads is −∞.
#[test]
fn leaves_stay_put_whatever_their_value() {
    let mut t = small_tree();
    t.value = vec![0.0, -3.5, 0.0, -1e300, 1e300];
    let forest = CompiledForest::compile_combined(&[t.clone(), t], 2, Combine::Sum { base: 0.25 }).unwrap();
    for (row, leaf) in [([0.0, 0.0], -3.5), ([1.0, 2.0], -1e300), ([1.0, 3.0], 1e300), ([f64::NAN, -1e308], -1e300)] {
        let mut x = [row[0], row[1], 0.0];
        assert_eq!(forest.probability_in(&mut x), 0.25 + (leaf + leaf), "{row:?}");
        let mut many = [row[0], row[1], 7.0, 7.0].repeat(ROW_LANES + 1);
        let mut out = vec![0.0; ROW_LANES + 1];
        forest.probabilities_in(&mut many, 4, &mut out);
        assert!(out.iter().all(|&o| o == 0.25 + (leaf + leaf)), "{row:?}: {out:?}");
    }
    // Averaged leaves must be probabilities; summed ones finite.
    let mut t = small_tree();
    t.value[1] = -0.5;
    assert!(CompiledForest::compile(&[t.clone()], 2).unwrap_err().to_string().contains("not a probability"));
    t.value[1] = f64::INFINITY;
    let err = CompiledForest::compile_combined(&[t], 2, Combine::Sum { base: 0.0 }).unwrap_err();
    assert!(err.to_string().contains("not a finite number"), "{err}");
}

#[test]
fn float_sums_add_leaves_in_f32_in_tree_order_on_every_walk() {
    // Leaves a hundredth of a probability, as an ONNX random forest's.
    let trees: Vec<Tree> = (0..37)
        .map(|k| {
            let mut t = small_tree();
            t.value = vec![0.0, f64::from(0.01f32 * k as f32), 0.0, f64::from(0.013f32), f64::from(0.0070001f32)];
            t
        })
        .collect();
    let forest = CompiledForest::compile_combined(&trees, 2, Combine::SumF32).unwrap();
    for row in [[0.0, 0.0], [1.0, 2.0], [1.0, 3.0]] {
        let leaf = |t: &Tree| t.value[t.path(&row).last().unwrap()] as f32;
        let f32_sum = trees.iter().fold(0.0f32, |s, t| s + leaf(t));
        let f64_sum: f64 = trees.iter().map(|t| f64::from(leaf(t))).sum();
        let mut x = [row[0], row[1], 0.0];
        assert_eq!(forest.probability_in(&mut x), f64::from(f32_sum), "{row:?}");
        let mut many = [row[0], row[1], 7.0, 7.0].repeat(ROW_LANES + 1);
        let mut out = vec![0.0; ROW_LANES + 1];
        forest.probabilities_in(&mut many, 4, &mut out);
        assert!(out.iter().all(|&o| o == f64::from(f32_sum)), "{row:?}: {out:?}");
        if row[0] == 0.0 {
            assert_ne!(f64::from(f32_sum), f64_sum, "the f32 sum is not the f64 one here");
        }
    }
}

#[test]
fn shared_or_repeated_children_are_refused_and_unreachable_nodes_dropped() {
    let mut t = small_tree();
    t.left[0] = 2;
    let err = CompiledForest::compile(&[t], 2).unwrap_err();
    assert!(err.to_string().contains("as both children"), "{err}");
    // Node 3 would be reached from 0 and from 2.
    let mut t = small_tree();
    t.left[0] = 3;
    let err = CompiledForest::compile(&[t], 2).unwrap_err();
    assert!(err.to_string().contains("node 3 has two parents"), "{err}");
    // A leaf at node 2: nodes 3 and 4 are unreachable, dropped and not counted.
    let mut t = small_tree();
    t.feature[2] = -1;
    t.value[2] = 0.5;
    let forest = CompiledForest::compile(&[t], 2).unwrap();
    assert_eq!((forest.node_count(), forest.cost()), (3, 2));
}

/// The bundled model's forest and the encoded width its splits need.
fn bundled_forest() -> (Vec<Tree>, usize) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/credit-risk/1/model.json");
    let (payload, _) = crate::model::format::decode(&std::fs::read(path).unwrap()).unwrap();
    let crate::model::estimator::Estimator::RandomForest { trees } = payload.estimator else { panic!("a forest") };
    let width = trees.iter().flat_map(|t| &t.feature).map(|&f| f + 1).max().unwrap() as usize;
    (trees, width)
}

/// What the leaf terms added before they were summed in registers: each
/// reached leaf (tree by tree, straightforward walks) as a row of `width`
/// values, 0.0 plus its (group, delta) pairs, added to `out` value by value.
fn reference_group_contributions(forest: &CompiledForest, width: usize, x: &[f64], out: &mut [f64]) -> f64 {
    let Some(LeafTerms::Sparse(t)) = &forest.leaf_terms else { panic!("pairs") };
    let mut total = 0.0;
    for tree in 0..forest.trees() {
        let mut k = tree;
        while forest.nodes[k].child as usize != k {
            let node = forest.nodes[k];
            k = (node.child + goes_right(x[node.column as usize], node.threshold)) as usize;
        }
        total = forest.combine.add(total, forest.nodes[k].threshold);
        let mut row = vec![0.0; width];
        let (a, b) = (t.start[k] as usize, t.start[k + 1] as usize);
        for (g, d) in t.groups[a..b].iter().zip(&t.deltas[a..b]) {
            row[*g as usize] += d;
        }
        for (o, v) in out[..width].iter_mut().zip(&row) {
            *o += v;
        }
    }
    forest.combine.finish(total, forest.trees())
}

/// Dense leaf rows summed in locals give the bits of the rows added to
/// `out` value by value, for every dense width (1 to 16 groups), on 10,000
/// rows of the bundled model's columns (values near its thresholds, some
/// NaN) and `out` not starting at zero (−0.0 included).
#[test]
fn dense_leaf_rows_give_the_bits_of_the_plain_adds_on_10000_rows() {
    let (trees, width) = bundled_forest();
    let forest = CompiledForest::compile(&trees, width).unwrap();
    // Each column's thresholds, to draw values near them.
    let mut cuts = vec![Vec::new(); width];
    for tree in &trees {
        for (&f, &t) in tree.feature.iter().zip(&tree.threshold) {
            if f >= 0 {
                cuts[f as usize].push(t);
            }
        }
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rows: Vec<Vec<f64>> = (0..10_000)
        .map(|_| {
            let mut x: Vec<f64> = (0..width)
                .map(|c| match (next() % 16, cuts[c].len() as u64) {
                    (0, _) | (_, 0) => f64::NAN,
                    (r, n) => cuts[c][(next() % n) as usize] + (r as f64 - 8.0) * 1e-3,
                })
                .collect();
            x.resize(SHORT_ROW, 0.0);
            x
        })
        .collect();
    for groups in 1..=DENSE_WIDTH {
        let column_group: Vec<u16> = (0..width).map(|c| (c % groups) as u16).collect();
        let mut dense = forest.clone();
        dense.index_leaves(&column_group);
        assert!(!matches!(dense.leaf_terms, Some(LeafTerms::Sparse(_))), "{groups} groups are dense");
        // The same groups, with one more never split on (the padding
        // column's): too wide for rows, so the terms stay pairs.
        let mut pairs = forest.clone();
        pairs.index_leaves(&[column_group.clone(), vec![DENSE_WIDTH as u16]].concat());
        for (r, row) in rows.iter().enumerate() {
            let start: Vec<f64> = (0..groups).map(|g| [0.0, -0.0, 1e-3 * r as f64][(g + r) % 3]).collect();
            let (mut got, mut want) = (start.clone(), start);
            let mut x = row.clone();
            let score = dense.group_contributions_in(&mut x, &mut got).unwrap();
            let mut x = row.clone();
            x[width] = PAD;
            let reference = reference_group_contributions(&pairs, groups, &x, &mut want);
            assert_eq!(score.to_bits(), reference.to_bits(), "{groups} groups, row {r}");
            let bits = |v: &[f64]| v.iter().map(|c| c.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{groups} groups, row {r}");
        }
    }
}
