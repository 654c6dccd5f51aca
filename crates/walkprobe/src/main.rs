//! The record behind the many-row walk's design (docs/fast-path.md, "the
//! batch goal"): scores the bundled forest over synthetic rows with the
//! alternatives to riskserve's walk and prints each one's median cost per
//! row, after checking that every one gives the straightforward walk's
//! answers bit for bit.
//!
//! - `served`: `Model::predict_many`, what the server runs (encoding
//!   included).
//! - `server's walk`: the server's own many-row walk
//!   (`CompiledEstimator::probabilities_in`) over rows already encoded at
//!   its batch stride: twelve rows side by side through one tree for its
//!   full depth, no branch.
//! - `fixed depth`: the probe's copy of that walk with the nodes in three
//!   parallel arrays, the layout the gathers need; the baseline the early
//!   exits and gathers change one thing of.
//! - `early exit every K`: the same, stopping once a check finds no lane
//!   moved (every K steps, after the tree's shallowest leaf).
//! - `AVX-512 gathers xN`: N rows' walks in vector lanes, each step four
//!   gathers (column, threshold, child, row value).
//! - `QuickScorer AVX-512`: no walk at all. Every row's values are first
//!   ranked among each column's thresholds (`binning`, reported apart); then
//!   for 64 rows at once every node's comparison is one vector compare, and
//!   a node whose rows go right clears its left subtree's leaves in those
//!   rows' leaf bit vectors (leaves numbered left to right, bytes transposed
//!   so one vector holds a byte of 64 rows); each row's leaf is the lowest
//!   bit left (Lucchese et al., SIGIR 2015; the byte layout of RapidScorer,
//!   KDD 2018).
//!
//! The vector kernels need `unsafe` (runtime-detected target features, raw
//! loads), which riskserve itself forbids; this binary is a measurement, not
//! a code path. On a machine without AVX-512 they are skipped.
//!
//! Usage: `cargo run --release -p walkprobe [ROWS]` (default 1,024, a
//! multiple of 64) from the repository root.

use riskserve::model::estimator::Estimator;
use riskserve::model::format;
use riskserve::model::tree::Tree;
use std::time::Instant;

/// Rows side by side in the walks: eight, one AVX-512 vector of `f64`s (the
/// server's scalar walk, `ROW_LANES`, now takes twelve).
const LANES: usize = 8;
/// Values per row in the walks' row layout (the server's `SHORT_ROW`).
const ROW: usize = 64;
type LaneGroup = [[f64; ROW]; LANES];

fn main() {
    let rows: usize = std::env::args().nth(1).map_or(1024, |a| a.parse().expect("ROWS: a number"));
    assert!(rows > 0 && rows.is_multiple_of(64), "ROWS must be a positive multiple of 64");
    let bytes = std::fs::read("models/credit-risk/1/model.json").expect("run from the repository root");
    let model = riskserve::model::Model::from_bytes(&bytes).expect("bundled model loads");
    let (payload, _) = format::decode(&bytes).expect("bundled model decodes");
    let Estimator::RandomForest { trees } = &payload.estimator else { panic!("the bundled model is a forest") };
    let apps: Vec<_> = riskserve::train::synth::generate(rows, 7).into_iter().map(|(app, _)| app).collect();
    let apps = model.fields.loan_rows(&apps);
    let width = model.encoder.width();
    let encoded = model.encoder.encode_rows(apps.view());
    let reference: Vec<f64> =
        (0..rows).map(|r| payload.estimator.reference_probability(&encoded[r * width..][..width])).collect();

    let forest = SoaForest::compile(trees, width);
    let (full, useful) = step_counts(trees, &encoded, width);
    println!("{} trees, {width} encoded columns, {rows} synthetic rows", trees.len());
    println!("steps per row: {full:.0} at full depth, {useful:.0} to the leaves");

    let mut results: Vec<(&str, f64)> = Vec::new();
    let mut served = Vec::with_capacity(rows);
    let us = median_per_row(rows, || {
        served.clear();
        model.predict_many(apps.view(), &mut served);
    });
    let served: Vec<f64> = served.iter().map(|p| p.probability_late).collect();
    check("served", &served, &reference);
    results.push(("served (predict_many)", us));

    let compiled = payload.estimator.compile(width).expect("bundled forest compiles");
    let stride = compiled.batch_stride();
    let mut at_stride = vec![0.0; rows * stride];
    for (app, row) in apps.iter().zip(at_stride.chunks_exact_mut(stride)) {
        model.encoder.encode_into(app, &mut row[..width]);
    }
    let mut out = vec![0.0; rows];
    compiled.probabilities_in(&mut at_stride, stride, &mut out);
    check("server's walk", &out, &reference);
    results
        .push(("server's walk", median_per_row(rows, || compiled.probabilities_in(&mut at_stride, stride, &mut out))));
    // The probe's walks read the same rows, eight at a time.
    assert_eq!(stride, ROW, "the bundled model's rows are short rows");
    let (short_rows, _) = at_stride.as_chunks::<ROW>();
    let (groups, _): (&[LaneGroup], _) = short_rows.as_chunks::<LANES>();

    let mut walk = |name: &'static str, f: &dyn Fn(&mut [f64])| {
        f(&mut out);
        check(name, &out, &reference);
        results.push((name, median_per_row(rows, || f(&mut out))));
    };
    walk("fixed depth", &|o| forest.fixed_depth(groups, o));
    walk("early exit every 1", &|o| forest.early_exit::<1>(groups, o));
    walk("early exit every 2", &|o| forest.early_exit::<2>(groups, o));
    walk("early exit every 4", &|o| forest.early_exit::<4>(groups, o));
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        walk("AVX-512 gathers x8", &|o| avx512::gathers::<1>(&forest, groups, o));
        walk("AVX-512 gathers x16", &|o| avx512::gathers::<2>(&forest, groups, o));
        let qs = QuickScorer::compile(trees, width);
        let mut bins = Vec::new();
        qs.bin(&encoded, width, &mut bins);
        walk("QuickScorer AVX-512", &|o| avx512::quickscorer(&qs, &bins, o));
        results.push(("QuickScorer binning", median_per_row(rows, || qs.bin(&encoded, width, &mut bins))));
    } else {
        println!("no AVX-512 on this CPU: the vector kernels are skipped");
    }
    println!("\n{:<24} {:>12}", "walk", "µs per row");
    for (name, us) in results {
        println!("{name:<24} {us:>12.3}");
    }
}

/// Refuses to report a walk whose answers differ from the reference.
fn check(name: &str, got: &[f64], reference: &[f64]) {
    let differ = got.iter().zip(reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "{name}: {differ} answers differ from the straightforward walk");
}

/// Median over 31 runs of `f`, in µs per row.
fn median_per_row(rows: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..31)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2] / rows as f64 * 1e6
}

/// Steps per row: walking every tree to its depth, and only to each leaf.
fn step_counts(trees: &[Tree], encoded: &[f64], width: usize) -> (f64, f64) {
    let rows = encoded.len() / width;
    let (mut full, mut useful) = (0, 0);
    for tree in trees {
        // Steps to the leaf: the nodes on the path but the root.
        let depths: Vec<usize> = (0..rows).map(|r| tree.path(&encoded[r * width..][..width]).count() - 1).collect();
        full += depths.iter().max().unwrap_or(&0) * rows;
        useful += depths.iter().sum::<usize>();
    }
    (full as f64 / rows as f64, useful as f64 / rows as f64)
}

/// The forest compiled as riskserve compiles it, but in three parallel
/// arrays and each tree breadth first (the server lays trees out subtree by
/// subtree): children adjacent (right = left + 1), leaves pointing at
/// themselves with the padding column and their probability as the
/// threshold, so a walk at a leaf stays there.
struct SoaForest {
    threshold: Vec<f64>,
    column: Vec<u32>,
    child: Vec<u32>,
    roots: Vec<u32>,
    depths: Vec<u32>,
    /// Shallowest leaf per tree: steps every row takes.
    shallowest: Vec<u32>,
    mask: usize,
}

impl SoaForest {
    fn compile(trees: &[Tree], width: usize) -> SoaForest {
        let pad = width as u32;
        let mut f = SoaForest {
            threshold: vec![],
            column: vec![],
            child: vec![],
            roots: vec![],
            depths: vec![],
            shallowest: vec![],
            mask: 0,
        };
        for tree in trees {
            let base = f.threshold.len() as u32;
            f.roots.push(base);
            let mut order = vec![(0u32, 0u32)];
            let (mut deepest, mut shallowest) = (0, u32::MAX);
            let mut k = 0;
            while k < order.len() {
                let (i, depth) = order[k];
                let i = i as usize;
                deepest = deepest.max(depth);
                if tree.feature[i] < 0 {
                    shallowest = shallowest.min(depth);
                    f.threshold.push(tree.value[i]);
                    f.column.push(pad);
                    f.child.push(base + k as u32);
                } else {
                    f.threshold.push(tree.threshold[i]);
                    f.column.push(tree.feature[i] as u32);
                    f.child.push(base + order.len() as u32);
                    order.push((tree.left[i], depth + 1));
                    order.push((tree.right[i], depth + 1));
                }
                k += 1;
            }
            f.depths.push(deepest);
            f.shallowest.push(shallowest);
        }
        let size = f.threshold.len().next_power_of_two();
        while f.threshold.len() < size {
            let k = f.threshold.len() as u32;
            f.threshold.push(0.0);
            f.column.push(pad);
            f.child.push(k);
        }
        f.mask = size - 1;
        f
    }

    /// One step of every lane.
    #[inline(always)]
    fn step(&self, group: &LaneGroup, at: &mut [u32; LANES]) {
        for (lane, a) in at.iter_mut().enumerate() {
            let i = *a as usize & self.mask;
            let v = group[lane][self.column[i] as usize & (ROW - 1)];
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let right = u32::from(!(v <= self.threshold[i]));
            *a = self.child[i] + right;
        }
    }

    /// Adds the leaves' values, then averages (the server's order).
    fn finish(&self, sums: &mut [f64], at: &[u32; LANES]) {
        for (s, &a) in sums.iter_mut().zip(at) {
            *s += self.threshold[a as usize & self.mask];
        }
    }

    fn average(&self, out: &mut [f64]) {
        let trees = self.roots.len() as f64;
        out.iter_mut().for_each(|o| *o /= trees);
    }

    fn fixed_depth(&self, groups: &[LaneGroup], out: &mut [f64]) {
        out.fill(0.0);
        for (t, &steps) in self.depths.iter().enumerate() {
            for (group, sums) in groups.iter().zip(out.chunks_exact_mut(LANES)) {
                let mut at = [self.roots[t]; LANES];
                for _ in 0..steps {
                    self.step(group, &mut at);
                }
                self.finish(sums, &at);
            }
        }
        self.average(out);
    }

    fn early_exit<const CHECK: usize>(&self, groups: &[LaneGroup], out: &mut [f64]) {
        out.fill(0.0);
        for (t, &steps) in self.depths.iter().enumerate() {
            for (group, sums) in groups.iter().zip(out.chunks_exact_mut(LANES)) {
                let mut at = [self.roots[t]; LANES];
                for _ in 0..self.shallowest[t] {
                    self.step(group, &mut at);
                }
                let mut done = self.shallowest[t];
                let mut sum: u64 = at.iter().map(|&a| u64::from(a)).sum();
                while done < steps {
                    for _ in 0..CHECK {
                        self.step(group, &mut at);
                    }
                    done += CHECK as u32;
                    let moved_to: u64 = at.iter().map(|&a| u64::from(a)).sum();
                    if moved_to == sum {
                        break;
                    }
                    sum = moved_to;
                }
                self.finish(sums, &at);
            }
        }
        self.average(out);
    }
}

/// One tree for QuickScorer: its internal nodes' comparisons, and which
/// leaf bits each clears, grouped by byte of the leaf bit vector.
struct QsTree {
    /// Per internal node: (column, rank of its threshold in the column).
    nodes: Vec<(u16, u16)>,
    /// (node, mask byte) for byte 0, then byte 1, ...: a row that goes right
    /// at the node keeps only the mask's bits of that byte.
    clears: Vec<(u16, u8)>,
    /// Per byte: where its entries in `clears` end.
    byte_end: Vec<u32>,
    /// Leaf values, left to right, padded to 256 (a leaf index is a byte).
    leaves: Vec<f64>,
}

/// A forest for QuickScorer (see the module doc), for trees of up to 256
/// leaves and columns of up to 65,534 distinct thresholds.
struct QuickScorer {
    trees: Vec<QsTree>,
    /// Per column: the distinct thresholds of all its nodes, ascending.
    thresholds: Vec<Vec<f64>>,
}

impl QuickScorer {
    fn compile(trees: &[Tree], width: usize) -> QuickScorer {
        let mut thresholds = vec![Vec::new(); width];
        for tree in trees {
            for (&f, &t) in tree.feature.iter().zip(&tree.threshold) {
                if f >= 0 {
                    thresholds[f as usize].push(t);
                }
            }
        }
        for column in &mut thresholds {
            column.sort_by(f64::total_cmp);
            column.dedup();
            assert!(column.len() < usize::from(u16::MAX), "too many thresholds for 16-bit ranks");
        }
        let trees = trees.iter().map(|tree| QsTree::compile(tree, &thresholds)).collect();
        QuickScorer { trees, thresholds }
    }

    /// Each row's rank in each column, `bins[block * width + column][row]`
    /// for blocks of 64 rows: how many of the column's thresholds lie below
    /// the value (NaN: above them all), so a row goes right at a node exactly
    /// when its rank exceeds the node's.
    fn bin(&self, encoded: &[f64], width: usize, bins: &mut Vec<[u16; 64]>) {
        let rows = encoded.len() / width;
        bins.clear();
        bins.resize(rows / 64 * width, [0; 64]);
        for r in 0..rows {
            for (c, thresholds) in self.thresholds.iter().enumerate() {
                let x = encoded[r * width + c];
                let rank = if x.is_nan() { u16::MAX } else { thresholds.partition_point(|&t| t < x) as u16 };
                bins[r / 64 * width + c][r % 64] = rank;
            }
        }
    }
}

impl QsTree {
    fn compile(tree: &Tree, thresholds: &[Vec<f64>]) -> QsTree {
        /// Numbers leaves left to right; notes each internal node's left
        /// subtree leaves `[lo, mid)`. Returns the subtree's leaf range.
        fn number(
            tree: &Tree,
            i: usize,
            leaves: &mut Vec<f64>,
            spans: &mut Vec<(usize, usize, usize)>,
        ) -> (usize, usize) {
            if tree.feature[i] < 0 {
                leaves.push(tree.value[i]);
                return (leaves.len() - 1, leaves.len());
            }
            let (lo, mid) = number(tree, tree.left[i] as usize, leaves, spans);
            let (_, hi) = number(tree, tree.right[i] as usize, leaves, spans);
            spans.push((i, lo, mid));
            (lo, hi)
        }
        let (mut leaves, mut spans) = (Vec::new(), Vec::new());
        number(tree, 0, &mut leaves, &mut spans);
        assert!(leaves.len() <= 256, "a tree with more than 256 leaves");
        let bytes = leaves.len().div_ceil(8);
        let mut nodes = Vec::new();
        let mut clears: Vec<(u8, u16, u8)> = Vec::new();
        for &(i, lo, mid) in &spans {
            let column = tree.feature[i] as usize;
            let rank =
                thresholds[column].binary_search_by(|t| t.total_cmp(&tree.threshold[i])).expect("threshold listed");
            for byte in lo / 8..=(mid - 1) / 8 {
                let cleared = (lo.max(byte * 8)..mid.min(byte * 8 + 8)).fold(0u8, |m, leaf| m | 1 << (leaf - byte * 8));
                clears.push((byte as u8, nodes.len() as u16, !cleared));
            }
            nodes.push((column as u16, rank as u16));
        }
        clears.sort_unstable();
        let byte_end = (0..bytes).map(|b| clears.partition_point(|c| usize::from(c.0) <= b) as u32).collect();
        leaves.resize(256, 0.0);
        QsTree { nodes, clears: clears.into_iter().map(|(_, n, m)| (n, m)).collect(), byte_end, leaves }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{LaneGroup, QuickScorer, SoaForest, LANES, ROW};
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bitalg")
    }

    /// `G` lane groups (8 rows each) walked in vector lanes.
    pub fn gathers<const G: usize>(forest: &SoaForest, groups: &[LaneGroup], out: &mut [f64]) {
        assert!(available() && groups.len().is_multiple_of(G) && out.len() == groups.len() * LANES);
        // SAFETY: the features were detected above; every gathered index is
        // masked into its array (nodes: `mask`, a power of two minus one, and
        // the arrays are that long; row values: lane * 64 + column & 63 within
        // one group of 8 rows of 64 values).
        unsafe { gathers_avx512::<G>(forest, groups, out) }
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    unsafe fn gathers_avx512<const G: usize>(forest: &SoaForest, groups: &[LaneGroup], out: &mut [f64]) {
        out.fill(0.0);
        let lane_offset = _mm256_setr_epi32(0, 64, 128, 192, 256, 320, 384, 448);
        let node_mask = _mm256_set1_epi32(forest.mask as i32);
        let column_mask = _mm256_set1_epi32(ROW as i32 - 1);
        let (threshold, column, child) =
            (forest.threshold.as_ptr(), forest.column.as_ptr().cast::<i32>(), forest.child.as_ptr().cast::<i32>());
        for (t, &steps) in forest.depths.iter().enumerate() {
            for (gs, sums) in groups.chunks_exact(G).zip(out.chunks_exact_mut(G * LANES)) {
                let mut at = [_mm256_set1_epi32(forest.roots[t] as i32); G];
                for _ in 0..steps {
                    for (a, group) in at.iter_mut().zip(gs) {
                        let i = _mm256_and_si256(*a, node_mask);
                        let c = _mm256_and_si256(_mm256_i32gather_epi32::<4>(column, i), column_mask);
                        let th = _mm512_i32gather_pd::<8>(i, threshold);
                        let next = _mm256_i32gather_epi32::<4>(child, i);
                        let v =
                            _mm512_i32gather_pd::<8>(_mm256_add_epi32(lane_offset, c), group.as_ptr().cast::<f64>());
                        let left = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(v, th);
                        *a = _mm256_mask_add_epi32(next, !left, next, _mm256_set1_epi32(1));
                    }
                }
                for (a, sums) in at.iter().zip(sums.chunks_exact_mut(LANES)) {
                    let mut leaves = [0.0f64; LANES];
                    _mm512_storeu_pd(
                        leaves.as_mut_ptr(),
                        _mm512_i32gather_pd::<8>(_mm256_and_si256(*a, node_mask), threshold),
                    );
                    for (s, l) in sums.iter_mut().zip(leaves) {
                        *s += l;
                    }
                }
            }
        }
        forest.average(out);
    }

    /// QuickScorer over `bins` (from [`QuickScorer::bin`]), 64 rows at a time.
    pub fn quickscorer(qs: &QuickScorer, bins: &[[u16; 64]], out: &mut [f64]) {
        let width = qs.thresholds.len();
        assert!(available() && bins.len() * 64 == out.len() * width);
        for tree in &qs.trees {
            assert!(tree.nodes.len() <= 256 && tree.byte_end.len() <= 32 && tree.leaves.len() == 256);
            assert!(tree.nodes.iter().all(|&(c, _)| usize::from(c) < width));
            assert!(tree.clears.iter().all(|&(n, _)| usize::from(n) < tree.nodes.len()));
        }
        // SAFETY: the features were detected above, and the assertions bound
        // every index the kernel does not check: node columns (< width, the
        // rows of a block's bins), node numbers (< 256, the compare masks),
        // leaf indices (a byte, < 256 leaves).
        unsafe { quickscorer_avx512(qs, bins, out) }
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512bitalg")]
    unsafe fn quickscorer_avx512(qs: &QuickScorer, bins: &[[u16; 64]], out: &mut [f64]) {
        let width = qs.thresholds.len();
        out.fill(0.0);
        // Per node of the current tree: 0xFF in the bytes of rows going right.
        let mut right = [_mm512_setzero_si512(); 256];
        for (block, sums) in bins.chunks_exact(width).zip(out.chunks_exact_mut(64)) {
            for tree in &qs.trees {
                for (r, &(column, rank)) in right.iter_mut().zip(&tree.nodes) {
                    let ranks = block.get_unchecked(usize::from(column)).as_ptr();
                    let node = _mm512_set1_epi16(rank as i16);
                    let low = _mm512_cmpgt_epu16_mask(_mm512_loadu_si512(ranks.cast()), node);
                    let high = _mm512_cmpgt_epu16_mask(_mm512_loadu_si512(ranks.add(32).cast()), node);
                    *r = _mm512_movm_epi8(u64::from(high) << 32 | u64::from(low));
                }
                // Bytes from the last: each row's lowest non-zero byte wins.
                let (mut lowest, mut at) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                let mut end = tree.clears.len();
                for b in (0..tree.byte_end.len()).rev() {
                    let start = if b == 0 { 0 } else { tree.byte_end[b - 1] as usize };
                    let mut bits = _mm512_set1_epi8(-1);
                    for &(node, keep) in tree.clears.get_unchecked(start..end) {
                        let r = *right.get_unchecked(usize::from(node));
                        // bits & (keep | !right)
                        bits = _mm512_ternarylogic_epi32::<0xB0>(bits, r, _mm512_set1_epi8(keep as i8));
                    }
                    end = start;
                    let nonzero = _mm512_test_epi8_mask(bits, bits);
                    lowest = _mm512_mask_mov_epi8(lowest, nonzero, bits);
                    at = _mm512_mask_mov_epi8(at, nonzero, _mm512_set1_epi8((b * 8) as i8));
                }
                // Trailing zeros of the byte: popcount((x & -x) - 1).
                let isolated = _mm512_and_si512(lowest, _mm512_sub_epi8(_mm512_setzero_si512(), lowest));
                let zeros = _mm512_popcnt_epi8(_mm512_sub_epi8(isolated, _mm512_set1_epi8(1)));
                let mut leaf = [0u8; 64];
                _mm512_storeu_si512(leaf.as_mut_ptr().cast(), _mm512_add_epi8(at, zeros));
                for (s, &l) in sums.iter_mut().zip(&leaf) {
                    *s += tree.leaves[usize::from(l)];
                }
            }
        }
        let trees = qs.trees.len() as f64;
        out.iter_mut().for_each(|o| *o /= trees);
    }
}
