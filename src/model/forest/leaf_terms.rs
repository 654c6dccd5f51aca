//! What explaining adds per reached leaf: each leaf's Saabas
//! contributions by group (feature), computed once at load by
//! [`super::CompiledForest::index_leaves`], as dense rows of a fixed even
//! width or as (group, delta) pairs, and the [`LeafSink`]s a walk hands each
//! group of reached leaves to (nothing for scoring, dense sums kept in
//! registers, pairs added to the output).

/// Groups (features) up to this many get one dense row per leaf: the
/// reached leaf's row is added whole, from contiguous memory, instead of
/// a list of (group, delta) pairs read from three arrays.
/// (`cargo bench --bench explain`'s `explained_top4`, bundled model: pairs
/// 2.19–2.24 µs, dense rows: see docs/explain.md.) Rows are summed in
/// locals by a [`LeafSink`] inlined into the walk: 1.39 µs (rows padded to
/// a multiple of four values) against 1.72 for rows added to `out` by a
/// closure the walk called (medians of three alternating runs each); rows
/// padded only to an even width (ten values, not twelve: fewer bytes to
/// read) 1.32 µs against 1.38. Storing only a row's values other than
/// +0.0, behind a mask (half the bytes), was slower: 2.6 µs against 1.9
/// with the same closure.
pub(super) const DENSE_WIDTH: usize = 16;

/// Each leaf's contributions by group: dense rows padded to an even
/// number of values (fixed-size arrays, so adding a row is a few vector
/// adds of two values with no bounds checks), or pairs.
#[derive(Debug, Clone)]
pub(super) enum LeafTerms {
    Dense2(Dense<2>),
    Dense4(Dense<4>),
    Dense6(Dense<6>),
    Dense8(Dense<8>),
    Dense10(Dense<10>),
    Dense12(Dense<12>),
    Dense14(Dense<14>),
    Dense16(Dense<16>),
    Sparse(Sparse),
}

/// One row of `N` values per leaf, the first `width` of them its groups'
/// (the rest 0.0): compiled node `k`'s row is `rows[row_of[k]]` (internal
/// nodes share the all-zero row 0).
#[derive(Debug, Clone)]
pub(super) struct Dense<const N: usize> {
    pub(super) row_of: Vec<u32>,
    pub(super) width: usize,
    pub(super) rows: Vec<[f64; N]>,
}

/// `groups[start[k]..start[k + 1]]` and `deltas[..]` for compiled node `k`
/// (empty for an internal node).
#[derive(Debug, Clone)]
pub(super) struct Sparse {
    pub(super) start: Vec<u32>,
    pub(super) groups: Vec<u16>,
    pub(super) deltas: Vec<f64>,
}

impl LeafTerms {
    /// The terms of a forest whose columns fall into `width` groups: dense
    /// rows of the smallest even size that holds them, up to
    /// [`DENSE_WIDTH`], else the pairs.
    pub(super) fn of(sparse: Sparse, width: usize) -> LeafTerms {
        match width {
            0..=2 => LeafTerms::Dense2(sparse.dense(width)),
            3..=4 => LeafTerms::Dense4(sparse.dense(width)),
            5..=6 => LeafTerms::Dense6(sparse.dense(width)),
            7..=8 => LeafTerms::Dense8(sparse.dense(width)),
            9..=10 => LeafTerms::Dense10(sparse.dense(width)),
            11..=12 => LeafTerms::Dense12(sparse.dense(width)),
            13..=14 => LeafTerms::Dense14(sparse.dense(width)),
            15..=DENSE_WIDTH => LeafTerms::Dense16(sparse.dense(width)),
            _ => LeafTerms::Sparse(sparse),
        }
    }
}

impl Sparse {
    /// The same terms as dense rows of `N` values (every group below
    /// `width`, at most `N`).
    fn dense<const N: usize>(&self, width: usize) -> Dense<N> {
        debug_assert!(width <= N);
        let nodes = self.start.len() - 1;
        // Row 0: all zeros, for nodes without terms.
        let mut rows = vec![[0.0; N]];
        let mut row_of = vec![0u32; nodes];
        for (k, row) in row_of.iter_mut().enumerate() {
            let (a, b) = (self.start[k] as usize, self.start[k + 1] as usize);
            if a == b {
                continue;
            }
            *row = rows.len() as u32;
            let mut values = [0.0; N];
            for (g, d) in self.groups[a..b].iter().zip(&self.deltas[a..b]) {
                values[*g as usize] += d;
            }
            rows.push(values);
        }
        Dense { row_of, width, rows }
    }
}

/// What a walk does with each group's reached leaves (a trait, not a
/// closure, so that its one method is always inlined into the walk; the
/// walk takes the sink by value and hands it back, so dense sums stay in
/// registers across it).
pub(super) trait LeafSink {
    fn add(&mut self, leaves: &[u32]);
}

/// Scoring: nothing.
pub(super) struct NoLeaves;

impl LeafSink for NoLeaves {
    #[inline(always)]
    fn add(&mut self, _: &[u32]) {}
}

/// Dense rows added to `N` sums; every reached leaf has a row (a filler
/// lane's leaf the zero row).
pub(super) struct DenseSums<'a, const N: usize> {
    pub(super) terms: &'a Dense<N>,
    pub(super) sums: [f64; N],
}

impl<const N: usize> LeafSink for DenseSums<'_, N> {
    #[inline(always)]
    fn add(&mut self, leaves: &[u32]) {
        for &leaf in leaves {
            let row = &self.terms.rows[self.terms.row_of[leaf as usize] as usize];
            for (s, v) in self.sums.iter_mut().zip(row) {
                *s += v;
            }
        }
    }
}

/// (group, delta) pairs added to `out`; every reached leaf has its pairs
/// (a filler lane's leaf none).
pub(super) struct SparseSums<'a> {
    pub(super) terms: &'a Sparse,
    pub(super) out: &'a mut [f64],
}

impl LeafSink for SparseSums<'_> {
    #[inline(always)]
    fn add(&mut self, leaves: &[u32]) {
        let t = self.terms;
        for &leaf in leaves {
            let (a, b) = (t.start[leaf as usize] as usize, t.start[leaf as usize + 1] as usize);
            for (g, d) in t.groups[a..b].iter().zip(&t.deltas[a..b]) {
                self.out[*g as usize] += d;
            }
        }
    }
}
